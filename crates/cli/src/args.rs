//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "geoffrey",
    version,
    about = "Automation hub for Discourse communities"
)]
pub struct Cli {
    /// Settings file (TOML); defaults to ./geoffrey.toml when it exists.
    #[arg(long, global = true, env = "GEOFFREY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Folder of the embedded store and queue; overrides data_dir from the settings.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// CouchDB server for instance databases, such as http://admin:password@127.0.0.1:5984/;
    /// overrides store.url.
    #[arg(
        long,
        global = true,
        env = "GEOFFREY_STORE__URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,

    /// Redis server for the job queue, such as redis://127.0.0.1:6379/; overrides queue.url.
    #[arg(
        long,
        global = true,
        env = "GEOFFREY_QUEUE__URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub queue: Option<String>,

    /// Log format on stderr: text, or json with one object per line.
    #[arg(long, global = true, env = "GEOFFREY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    pub fn is_long_running(&self) -> bool {
        matches!(
            self.command,
            Command::Run(_) | Command::Serve(_) | Command::Work | Command::Debug(_)
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the API server and the workers in one process; on the embedded store and queue
    /// unless --store and --queue name servers.
    Run(RunArgs),
    /// Runs only the API server; run as many as needed against one store and queue.
    Serve(RunArgs),
    /// Runs only the workers; run as many as needed against one store and queue.
    Work,
    /// Creates and lists instances.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Shows and changes an instance's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Shows an instance's job log, newest last.
    Logs(LogsArgs),
    /// Lists, replays and discards failed jobs.
    #[command(subcommand)]
    Failed(FailedCommand),
    /// Adds every existing forum user to the Mailchimp audience; needs discourse_api_key in
    /// the instance's configuration.
    #[command(subcommand)]
    Backfill(BackfillCommand),
    /// Lists an instance's hosted forms with their addresses and embed snippets.
    #[command(subcommand)]
    Forms(FormsCommand),
    /// Manages the key that encrypts the secrets stored in each instance's configuration.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Tools for trying Geoffrey out.
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(Debug, Subcommand)]
pub enum FormsCommand {
    /// Prints each form's address and an HTML snippet that embeds it in another website.
    List { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Prints a new random key for GEOFFREY_SECRET_KEY.
    NewKey,
    /// Encrypts every instance's secrets again with GEOFFREY_SECRET_KEY. Set the key being
    /// replaced as GEOFFREY_PREVIOUS_SECRET_KEY; secrets stored unencrypted are encrypted too.
    Rotate,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address to listen on; overrides server.listen.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Creates an instance's database and configuration and prints the webhook settings to
    /// enter in Discourse.
    Create {
        name: String,
        /// Base URL of the forum, such as https://forum.example.com.
        #[arg(long, value_name = "URL")]
        discourse_url: String,
        /// Webhook secret to use instead of a generated one (at least 12 characters).
        #[arg(
            long,
            env = "GEOFFREY_WEBHOOK_SECRET",
            value_name = "SECRET",
            hide_env_values = true
        )]
        webhook_secret: Option<String>,
    },
    /// Lists the instances.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Prints an instance's configuration as JSON, with secrets masked.
    Show { name: String },
    /// Replaces an instance's configuration with JSON from a file or stdin. Masked secrets
    /// keep their stored values; a `_rev` field makes the save fail if someone else saved
    /// in between.
    Set {
        name: String,
        /// JSON file to read; `-` or nothing reads stdin.
        #[arg(long, short, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Prints the JSON Schema of an app's section.
    Schema { app: String },
    /// Tests each configured app's connection and settings against its third party, such as
    /// the Mailchimp API key, audience and required merge fields.
    Check { name: String },
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub name: String,
    /// Only entries of this app, such as relay.
    #[arg(long)]
    pub app: Option<String>,
    /// Only entries of this feature, such as post_message.
    #[arg(long)]
    pub feature: Option<String>,
    /// Only entries with this outcome: succeeded, retrying, failed_permanently or
    /// failed_after_retries.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only entries of this event, such as topic_created.
    #[arg(long)]
    pub event: Option<String>,
    /// Only entries newer than this age, such as 15m or 2h.
    #[arg(long, value_name = "AGE")]
    pub since: Option<humantime::Duration>,
    /// Only entries older than this log entry id (the cursor printed for the next page).
    #[arg(long, value_name = "ID")]
    pub before: Option<String>,
    /// Number of entries to show.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
    /// Keeps printing new entries as they are written.
    #[arg(long, short)]
    pub follow: bool,
    /// Prints one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FailedCommand {
    /// Lists an instance's failed jobs with their reasons.
    List {
        name: String,
        #[arg(long, short = 'n', default_value_t = 100)]
        limit: usize,
    },
    /// Queues failed jobs again with a fresh attempt count.
    Replay {
        name: String,
        /// Job ids to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        job_ids: Vec<String>,
        /// Replays every failed job of the instance.
        #[arg(long)]
        all: bool,
    },
    /// Deletes failed jobs for good.
    Discard {
        name: String,
        #[arg(required = true)]
        job_ids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// Starts a backfill from the first user; the workers run it.
    Start { name: String },
    /// Shows a backfill's progress.
    Status { name: String },
    /// Stops a running backfill after the page in flight.
    Pause { name: String },
    /// Continues a paused backfill where it stopped.
    Resume { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Runs a chat webhook receiver that prints each message it gets, for trying the relay
    /// app without a chat service.
    Receiver {
        #[arg(long, default_value = "127.0.0.1:9000", value_name = "ADDR")]
        listen: SocketAddr,
    },
}
