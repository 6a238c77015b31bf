//! The fake Discourse API as a program, for trying the forms app and the Mailchimp backfill
//! by hand: `cargo run -p testkit --bin fake-discourse -- --listen 127.0.0.1:4020`.
//! `GET /_fake/created` lists the topics, private messages and invitations it received.

use testkit::discourse::{API_KEY, FakeDiscourse, Forum};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:4020".to_string();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(address)) => listen = address,
            _ => anyhow::bail!("unknown argument {arg:?}; usage: fake-discourse [--listen ADDR]"),
        }
    }
    let fake = FakeDiscourse::start_on(Forum::default(), &listen).await;
    println!("Fake Discourse at {} with API key {API_KEY:?}.", fake.url);
    println!("Categories 1, 4, 5 and 6; groups admins, moderators, staff and volunteers.");
    println!("What it received: {}/_fake/created", fake.url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
