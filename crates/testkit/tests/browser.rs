//! End-to-end tests of the browser harness: a real headless Chromium fills and submits a form
//! that axum serves on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::State;
use axum::response::{Html, Redirect};
use axum::routing::get;
use axum::{Form, Router};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::browser::Browser;

const WAIT: Duration = Duration::from_secs(10);

const SIGNUP_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Meetup sign-up</title></head>
<body>
<h1>Meetup sign-up</h1>
<form method="post" action="/signup">
  <p><label>Name <input name="name"></label></p>
  <p><label for="email">Email address</label>
     <input id="email" name="email" type="email" value="someone@example.com"></p>
  <p><label for="note">Note</label> <textarea id="note" name="note"></textarea></p>
  <p><label><input type="checkbox" name="newsletter" value="yes"> Send me the newsletter</label></p>
  <p><label><input type="checkbox" name="snacks" value="yes"> I will bring snacks</label></p>
  <p><label>Session
     <select name="session">
       <option value="am">Morning</option>
       <option value="pm">Afternoon</option>
     </select></label></p>
  <button type="submit">Sign up</button>
</form>
</body>
</html>"#;

type Submissions = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// Serves `app` on a free port of 127.0.0.1 and returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Builds the sign-up app: `/` shows the form, `/signup` records the submitted fields in order
/// and redirects to `/thanks`, which greets the last person who signed up.
fn signup_app(submissions: Submissions) -> Router {
    Router::new()
        .route("/", get(Html(SIGNUP_PAGE)))
        .route("/signup", axum::routing::post(signup))
        .route("/thanks", get(thanks))
        .with_state(submissions)
}

async fn signup(
    State(submissions): State<Submissions>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Redirect {
    submissions.lock().unwrap().push(fields);
    Redirect::to("/thanks")
}

async fn thanks(State(submissions): State<Submissions>) -> Html<String> {
    let submissions = submissions.lock().unwrap();
    let name = submissions
        .last()
        .and_then(|fields| fields.iter().find(|(key, _)| key == "name"))
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><meta charset=\"utf-8\"><h1>Thank you, {name}.</h1>"
    ))
}

#[tokio::test]
async fn form_submission_reaches_server() {
    let submissions = Submissions::default();
    let base_url = serve(signup_app(submissions.clone())).await;
    let browser = Browser::start().await;

    browser.open(&format!("{base_url}/")).await;
    assert_eq!(browser.text("h1").await, "Meetup sign-up");
    browser.fill("name", "Zoë Quill").await;
    browser.fill("Email address", "zoe@example.com").await;
    browser.fill("Note", "Vegetarian, please").await;
    browser.check("Send me the newsletter").await;
    browser.choose("Session", "Afternoon").await;
    browser.click_button("Sign up").await;

    browser.wait_for_text("Thank you, Zoë Quill.", WAIT).await;
    assert_eq!(browser.current_url().await.path(), "/thanks");
    let heading = browser.wait_for_element("h1", WAIT).await;
    assert_eq!(heading.text().await.unwrap(), "Thank you, Zoë Quill.");

    let submissions = submissions.lock().unwrap().clone();
    assert_eq!(submissions.len(), 1, "{submissions:?}");
    let expected = [
        ("name", "Zoë Quill"),
        ("email", "zoe@example.com"),
        ("note", "Vegetarian, please"),
        ("newsletter", "yes"),
        ("session", "pm"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    assert_eq!(submissions[0], expected);

    let path = browser.dir().join("screens/thanks.png");
    browser.screenshot(&path).await;
    let file = std::fs::File::open(&path).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let viewport = browser
        .client()
        .execute("return [window.innerWidth, window.innerHeight];", vec![])
        .await
        .unwrap();
    assert_eq!(frame.width, viewport[0]);
    assert_eq!(frame.height, viewport[1]);
}

#[tokio::test]
async fn browsers_share_no_cookies() {
    let base_url = serve(Router::new().route("/", get(Html("<p>empty</p>")))).await;
    let (first, second) = tokio::join!(Browser::start(), Browser::start());
    first.open(&format!("{base_url}/")).await;
    second.open(&format!("{base_url}/")).await;

    let set_cookie = "document.cookie = 'visited=yes'; return document.cookie;";
    let first_cookies = first.client().execute(set_cookie, vec![]).await.unwrap();
    assert_eq!(first_cookies, "visited=yes");

    second.open(&format!("{base_url}/")).await;
    let read_cookie = "return document.cookie;";
    let second_cookies = second.client().execute(read_cookie, vec![]).await.unwrap();
    assert_eq!(second_cookies, "");
}
