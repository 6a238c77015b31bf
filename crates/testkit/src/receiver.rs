//! A local stand-in for a chat service's incoming webhook, bound to 127.0.0.1 on port 0.
//! Tests script its responses (status and delay, in order) and read what it received.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted response.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
        }
    }

    pub fn after(delay: Duration, status: u16) -> Self {
        Self { status, delay }
    }
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Reply>,
    /// Response once the script is used up.
    default: Option<Reply>,
    received: Vec<serde_json::Value>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
}

impl Receiver {
    /// Starts a receiver that returns 200 until a test scripts other responses.
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    /// Replies to the next requests with these responses, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().unwrap().script.extend(replies);
    }

    /// Replies to every request after the script with this response.
    pub fn always(&self, reply: Reply) {
        self.shared.lock().unwrap().default = Some(reply);
    }

    /// Returns the JSON bodies received so far, including those that got an error status.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.shared.lock().unwrap().received.clone()
    }

    /// Returns the `text` of every message received so far.
    pub fn texts(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|message| message["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

async fn receive(State(shared): State<Arc<Mutex<Shared>>>, body: String) -> StatusCode {
    let reply = {
        let mut shared = shared.lock().unwrap();
        shared
            .received
            .push(serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)));
        shared
            .script
            .pop_front()
            .or(shared.default)
            .unwrap_or(Reply::status(200))
    };
    tokio::time::sleep(reply.delay).await;
    StatusCode::from_u16(reply.status).unwrap()
}
