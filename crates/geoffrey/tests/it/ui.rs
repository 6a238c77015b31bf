//! The web UI's sign-in, sessions, CSRF checks and instance list, over HTTP.

use serde_json::json;
use testkit::geoffrey::{Mode, TestGeoffrey};
use testkit::in_both_modes;
use testkit::ui::{UiClient, http_client};

in_both_modes!(
    pages_need_a_session,
    administrator_creates_an_instance,
    forms_without_the_csrf_token_change_nothing,
    sign_in_is_rate_limited,
    wrong_password_is_rejected,
);

async fn pages_need_a_session(mode: Mode) {
    let geoffrey = TestGeoffrey::start(mode).await;
    let http = http_client();
    let page = http
        .get(format!("{}/ui/instances?x=1", geoffrey.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(
        page.headers()["location"],
        "/ui/sign-in?next=%2Fui%2Finstances%3Fx%3D1"
    );
    let api = http
        .get(format!("{}/api/v1/instances", geoffrey.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let body: serde_json::Value = api.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("sign in"),
        "{body}"
    );

    // A forged or damaged cookie counts as none.
    for cookie in [
        "geoffrey_session=sealed:v1:abc:def",
        "geoffrey_session={\"user\":\"admin\",\"admin\":true}",
    ] {
        let page = http
            .get(format!("{}/ui/instances", geoffrey.base_url))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 303, "{cookie}");
    }

    let sign_in = http
        .get(format!("{}/ui/sign-in", geoffrey.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), 200);
    let headers = sign_in.headers().clone();
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = sign_in.text().await.unwrap();
    assert!(html.contains("name=\"password\""), "{html}");

    let htmx = http
        .get(format!("{}/ui/assets/htmx.min.js", geoffrey.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(htmx.status(), 200);
    assert!(htmx.text().await.unwrap().starts_with("var htmx="));

    // The assets' URLs carry the build's asset version, so an upgrade is not hidden by a
    // stylesheet cached for an hour.
    let version = geoffrey::ui::asset_version();
    let stylesheet = format!("/ui/assets/ui.css?v={version}");
    assert!(html.contains(&stylesheet), "{html}");
    assert!(html.contains(&format!("/ui/assets/htmx.min.js?v={version}")));
    let css = http
        .get(format!("{}{stylesheet}", geoffrey.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.text().await.unwrap().contains("table.log"));
}

async fn administrator_creates_an_instance(mode: Mode) {
    let geoffrey = TestGeoffrey::start(mode).await;
    let admin = geoffrey.admin_client().await;

    let empty = admin.get("/ui/instances").await;
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("No instance yet"), "{}", empty.body);

    let created = admin
        .post_form(
            "/ui/instances",
            &[
                ("name", "forum"),
                ("discourse_url", "https://forum.example.com/"),
            ],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let hook = format!(
        "{}/hooks/discourse/forum",
        geoffrey.services.settings.public_url()
    );
    assert!(created.text().contains(&hook), "{}", created.body);
    let config = geoffrey::instance::load(
        geoffrey.services.store.as_ref(),
        &geoffrey.services.apps,
        &geoffrey.services.keyring,
        "forum",
    )
    .await
    .unwrap();
    let secret = config.config.webhook_secret.expose().to_string();
    assert_eq!(secret.len(), 64);
    assert!(created.body.contains(&secret), "the secret is shown once");
    assert_eq!(config.config.discourse_url, "https://forum.example.com");

    let audit = admin.get("/api/v1/instances/forum/audit").await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let created_entry = &audit.json()["entries"][0];
    assert_eq!(
        created_entry["action"], "instance_created",
        "{}",
        audit.body
    );
    assert_eq!(created_entry["actor"]["source"], "ui", "{}", audit.body);
    assert!(!audit.body.contains(&secret), "{}", audit.body);
    let paths: Vec<&str> = created_entry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"discourse_url"), "{paths:?}");
    assert!(paths.contains(&"webhook_secret"), "{paths:?}");

    let list = admin.get("/ui/instances").await;
    assert!(list.body.contains("/ui/instances/forum"), "{}", list.body);
    assert!(
        !list.body.contains(&secret),
        "the list never shows the secret"
    );
    let json = admin.get("/api/v1/instances").await.json();
    assert_eq!(json["instances"][0]["name"], "forum");
    assert_eq!(json["instances"][0]["failed"], 0);
    assert!(!json.to_string().contains(&secret));

    // The same name again, and invalid fields, are named and change nothing.
    let again = admin
        .post_form(
            "/ui/instances",
            &[
                ("name", "forum"),
                ("discourse_url", "https://other.example.com"),
            ],
        )
        .await;
    assert_eq!(again.status, 422);
    assert!(again.body.contains("exists already"), "{}", again.body);
    let invalid = admin
        .send_json(
            reqwest::Method::POST,
            "/api/v1/instances",
            &json!({ "name": "Bad Name", "discourse_url": "forum" }),
        )
        .await;
    assert_eq!(invalid.status, 422);
    assert!(
        invalid.json()["fields"]["name"]
            .as_str()
            .unwrap()
            .contains("lowercase")
    );
    let names = geoffrey.services.store.list_databases().await.unwrap();
    assert_eq!(names, ["forum"]);

    let by_json = admin
        .send_json(
            reqwest::Method::POST,
            "/api/v1/instances",
            &json!({ "name": "second", "discourse_url": "https://second.example.com" }),
        )
        .await;
    assert_eq!(by_json.status, 201, "{}", by_json.body);
    assert_eq!(by_json.json()["webhook_secret"].as_str().unwrap().len(), 64);

    // Signing out ends the session in this browser.
    let out = admin.post_form("/ui/sign-out", &[]).await;
    assert_eq!(out.status, 303);
}

async fn forms_without_the_csrf_token_change_nothing(mode: Mode) {
    let geoffrey = TestGeoffrey::start(mode).await;
    let admin = geoffrey.admin_client().await;
    let forged = admin
        .http
        .post(format!("{}/ui/instances", geoffrey.base_url))
        .header("Cookie", &admin.cookie)
        .form(&[
            ("name", "forum"),
            ("discourse_url", "https://f.example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.text().await.unwrap().contains("security token"));
    let wrong = admin
        .http
        .post(format!("{}/api/v1/instances", geoffrey.base_url))
        .header("Cookie", &admin.cookie)
        .header("X-CSRF-Token", "not-the-token")
        .json(&json!({ "name": "forum", "discourse_url": "https://f.example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    assert!(
        geoffrey
            .services
            .store
            .list_databases()
            .await
            .unwrap()
            .is_empty()
    );
}

async fn wrong_password_is_rejected(mode: Mode) {
    let geoffrey = TestGeoffrey::start(mode).await;
    let user = match mode {
        Mode::Embedded => "admin",
        Mode::Distributed => testkit::servers::COUCH_ADMIN,
    };
    let rejected = UiClient::sign_in(&geoffrey.base_url, user, "wrong password")
        .await
        .err()
        .expect("a wrong password must not sign in");
    assert_eq!(rejected.status, 400);
    assert!(
        rejected.body.contains("name or the password is wrong"),
        "{}",
        rejected.body
    );
    assert!(!rejected.body.contains("wrong password"));

    // The form: its token comes with a cookie, and a wrong password shows the form again.
    let http = http_client();
    let form = http
        .get(format!(
            "{}/ui/sign-in?next=/ui/instances",
            geoffrey.base_url
        ))
        .send()
        .await
        .unwrap();
    let cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = cookie.trim_start_matches("geoffrey_sign_in=").to_string();
    let post = |password: &'static str, token: String| {
        http.post(format!("{}/ui/sign-in", geoffrey.base_url))
            .header("Cookie", &cookie)
            .form(&[
                ("user", user),
                ("password", password),
                ("csrf", &token),
                ("next", "/ui/instances"),
            ])
            .send()
    };
    let again = post("wrong password", token.clone()).await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("name or the password is wrong")
    );
    let forged = post("x", "forged".to_string()).await.unwrap();
    assert_eq!(forged.status(), 403);
    let password = match mode {
        Mode::Embedded => testkit::ui::ADMIN_PASSWORD,
        Mode::Distributed => testkit::servers::COUCH_PASSWORD,
    };
    let good = post(password, token).await.unwrap();
    assert_eq!(good.status(), 303);
    assert_eq!(good.headers()["location"], "/ui/instances");
    let session = good
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_string())
        .find(|value| value.starts_with("geoffrey_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
}

async fn sign_in_is_rate_limited(mode: Mode) {
    let geoffrey = TestGeoffrey::start(mode).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let result = UiClient::sign_in(&geoffrey.base_url, "admin", "guess").await;
        statuses.push(result.err().expect("a guess must fail").status);
    }
    assert_eq!(&statuses[..10], [400; 10]);
    assert_eq!(&statuses[10..], [429, 429]);
    // The right password waits too: the limit does not tell guesses from the owner.
    let password = match mode {
        Mode::Embedded => testkit::ui::ADMIN_PASSWORD,
        Mode::Distributed => testkit::servers::COUCH_PASSWORD,
    };
    let limited = UiClient::sign_in(&geoffrey.base_url, "admin", password).await;
    assert_eq!(limited.err().expect("limited").status, 429);
}

#[tokio::test]
async fn setup_link_creates_the_administrator_once() {
    let geoffrey = TestGeoffrey::start_with(
        Mode::Embedded,
        |settings| settings.ui.admin_password = None,
        None,
        geoffrey::run::Roles::ALL,
    )
    .await;
    let link = geoffrey
        .setup_link()
        .expect("a setup link without a password");
    let token = link.split("token=").nth(1).unwrap().to_string();
    let http = http_client();
    let get = |url: String| http.get(url).send();

    let forged = get(format!("{}/ui/setup?token=forged", geoffrey.base_url))
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    let page = get(format!("{}/ui/setup?token={token}", geoffrey.base_url))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let sign_in_page = get(format!("{}/ui/sign-in", geoffrey.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sign_in_page.contains("setup link"), "{sign_in_page}");

    let post = |password: &str, repeat: &str| {
        http.post(format!("{}/ui/setup", geoffrey.base_url))
            .form(&[
                ("token", token.as_str()),
                ("password", password),
                ("repeat", repeat),
            ])
            .send()
    };
    let differ = post("first password", "second password").await.unwrap();
    assert_eq!(differ.status(), 422);
    assert!(differ.text().await.unwrap().contains("differ"));
    let short = post("short", "short").await.unwrap();
    assert_eq!(short.status(), 422);
    assert!(
        UiClient::sign_in(&geoffrey.base_url, "admin", "the chosen password")
            .await
            .is_err()
    );

    let created = post("the chosen password", "the chosen password")
        .await
        .unwrap();
    assert_eq!(created.status(), 303);
    let location = created.headers().get("location").unwrap().to_str().unwrap();
    assert_eq!(
        location, "/ui/instances",
        "the setup signs the administrator in"
    );
    let session = created
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("geoffrey_session="))
        .map(|value| value.split(';').next().unwrap().to_string())
        .expect("a session cookie after the setup");
    let instances = http
        .get(format!("{}/ui/instances", geoffrey.base_url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(instances.status(), 200);
    assert!(instances.text().await.unwrap().contains("No instance yet"));
    let used = post("another password", "another password").await.unwrap();
    assert_eq!(used.status(), 404, "the link works once");
    assert!(geoffrey.dir.path().join("ui-admin.json").exists());
    UiClient::sign_in(&geoffrey.base_url, "admin", "the chosen password")
        .await
        .expect("the new password signs in");
}

#[tokio::test]
async fn couch_members_see_their_instances_only() {
    let geoffrey = TestGeoffrey::start(Mode::Distributed).await;
    geoffrey.create_instance("alpha", json!({})).await;
    geoffrey.create_instance("beta", json!({})).await;
    let couch = geoffrey.couch.as_ref().unwrap();
    couch.create_member("ann", "ann-password", "alpha").await;

    let ann = UiClient::sign_in(&geoffrey.base_url, "ann", "ann-password")
        .await
        .expect("a CouchDB user signs in");
    let list = ann.get("/api/v1/instances").await.json();
    let names: Vec<_> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alpha"]);
    let page = ann.get("/ui/instances").await;
    assert!(
        page.body.contains("alpha") && !page.body.contains("beta"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("Create an instance"),
        "members create nothing"
    );

    let create = ann
        .send_json(
            reqwest::Method::POST,
            "/api/v1/instances",
            &json!({ "name": "gamma", "discourse_url": "https://g.example.com" }),
        )
        .await;
    assert_eq!(create.status, 403, "{}", create.body);

    let admin = geoffrey.admin_client().await;
    let all = admin.get("/api/v1/instances").await.json();
    assert_eq!(all["instances"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn sessions_end_after_their_lifetime() {
    let clock = geoffrey::clock::ManualClock::starting_at(1_800_000_000_000);
    let geoffrey = TestGeoffrey::start_with(
        Mode::Embedded,
        |settings| settings.ui.session_lifetime = std::time::Duration::from_secs(3600),
        Some(clock.clone()),
        geoffrey::run::Roles::ALL,
    )
    .await;
    let admin = geoffrey.admin_client().await;
    assert_eq!(admin.get("/ui/instances").await.status, 200);
    clock.advance(std::time::Duration::from_secs(3599));
    assert_eq!(admin.get("/ui/instances").await.status, 200);
    clock.advance(std::time::Duration::from_secs(2));
    let ended = admin.get("/ui/instances").await;
    assert_eq!(ended.status, 303);
    assert!(ended.location.unwrap().starts_with("/ui/sign-in"));
    assert_eq!(admin.get("/api/v1/instances").await.status, 401);

    // htmx requests are sent to the sign-in page as a whole.
    let fragment = admin
        .http
        .get(format!("{}/ui/instances", geoffrey.base_url))
        .header("Cookie", &admin.cookie)
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(fragment.status(), 204);
    assert!(
        fragment.headers()["hx-redirect"]
            .to_str()
            .unwrap()
            .starts_with("/ui/sign-in")
    );
}

#[tokio::test]
async fn api_rejections_are_json() {
    let geoffrey = TestGeoffrey::start(Mode::Embedded).await;
    let http = http_client();
    let text_body = http
        .post(format!("{}/api/v1/session", geoffrey.base_url))
        .header("Content-Type", "text/plain")
        .body("{\"user\":\"admin\",\"password\":\"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(text_body.status(), 415);
    assert!(text_body.headers().get("set-cookie").is_none());
    let body: serde_json::Value = text_body.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("Content-Type"),
        "{body}"
    );

    geoffrey.create_instance("forum", json!({})).await;
    let admin = geoffrey.admin_client().await;
    let bad_query = admin.get("/api/v1/instances/forum/audit?limit=-5").await;
    assert_eq!(bad_query.status, 400, "{}", bad_query.body);
    assert!(bad_query.json()["error"].is_string(), "{}", bad_query.body);
}

#[tokio::test]
async fn misconfigured_apps_show_their_reason() {
    let geoffrey = TestGeoffrey::start(Mode::Embedded).await;
    let rule = testkit::geoffrey::relay_rule(
        "topics",
        "https://chat.example.com/h",
        &["topic_created"],
        "x",
    );
    geoffrey
        .create_instance("forum", testkit::geoffrey::relay_apps(vec![rule]))
        .await;
    let reason = "HTTP 404 from the chat service; check the rule's URL";
    let status = geoffrey::app_status::misconfigured(reason, "job-1");
    geoffrey::app_status::write(geoffrey.services.store.as_ref(), "forum", "relay", &status)
        .await
        .unwrap();
    let admin = geoffrey.admin_client().await;

    let list = admin.get("/ui/instances").await;
    assert!(list.text().contains(reason), "{}", list.body);
    assert!(
        list.body.contains("/ui/instances/forum/config#app-relay"),
        "{}",
        list.body
    );
    let config = admin.get("/ui/instances/forum/config").await;
    assert!(config.text().contains(reason), "{}", config.body);
}
