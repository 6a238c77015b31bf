//! Handlers for `/3.0/ping` and the list routes: the list object, its merge fields and batch
//! subscribe.

use crate::batch::{self, BatchFlags};
use crate::http::query_flag;
use crate::input::parse_json;
use crate::member::Status;
use crate::problem::Problem;
use crate::state::{ListState, Shared};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// `GET /3.0/ping`.
pub(super) async fn ping() -> Json<Value> {
    Json(json!({"health_status": "Everything's Chimpy!"}))
}

/// `GET /3.0/lists/{list_id}`: the list object with member counts computed from the current
/// members. `total_contacts` is added with `include_total_contacts=true`.
pub(super) async fn get_list(
    State(shared): State<Arc<Shared>>,
    Path(list_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    let state = shared.lock();
    let list = state.lists.get(&list_id).ok_or_else(Problem::not_found)?;
    let mut body = list_json(list);
    if query_flag(&query, "include_total_contacts") {
        body["stats"]["total_contacts"] = json!(list.members.len());
    }
    Ok(Json(body))
}

fn list_json(list: &ListState) -> Value {
    let count = |status: Status| {
        list.members
            .values()
            .filter(|record| record.status == status)
            .count()
    };
    let subscribed = count(Status::Subscribed);
    let unsubscribed = count(Status::Unsubscribed);
    let cleaned = count(Status::Cleaned);
    json!({
        "id": list.config.id,
        "web_id": list.web_id,
        "name": list.config.name,
        "contact": {"company": "", "address1": "", "address2": "", "city": "", "state": "",
                    "zip": "", "country": "", "phone": ""},
        "permission_reminder": "",
        "use_archive_bar": false,
        "campaign_defaults": {"from_name": "", "from_email": "", "subject": "", "language": "en"},
        "notify_on_subscribe": "",
        "notify_on_unsubscribe": "",
        "date_created": list.date_created,
        "list_rating": 0,
        "email_type_option": false,
        "subscribe_url_short": "",
        "subscribe_url_long": "",
        "beamer_address": "",
        "visibility": "prv",
        "double_optin": list.config.double_optin,
        "has_welcome": false,
        "marketing_permissions": false,
        "modules": [],
        "stats": {
            "member_count": subscribed,
            "unsubscribe_count": unsubscribed,
            "cleaned_count": cleaned,
            "member_count_since_send": subscribed,
            "unsubscribe_count_since_send": unsubscribed,
            "cleaned_count_since_send": cleaned,
            "campaign_count": 0,
            "campaign_last_sent": "",
            "merge_field_count": list.config.merge_fields.len(),
            "avg_sub_rate": 0,
            "avg_unsub_rate": 0,
            "target_sub_rate": 0,
            "open_rate": 0,
            "click_rate": 0,
            "last_sub_date": "",
            "last_unsub_date": "",
        },
        "_links": [],
    })
}

/// `GET /3.0/lists/{list_id}/merge-fields`: the configured fields. `merge_id` counts from 1,
/// because the address is merge field 0 on the real API.
pub(super) async fn merge_fields(
    State(shared): State<Arc<Shared>>,
    Path(list_id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let state = shared.lock();
    let list = state.lists.get(&list_id).ok_or_else(Problem::not_found)?;
    let fields: Vec<Value> = list
        .config
        .merge_fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            json!({
                "merge_id": index + 1,
                "tag": field.tag,
                "name": field.tag,
                "type": field.kind,
                "required": field.required,
                "default_value": "",
                "public": true,
                "display_order": index + 2,
                "options": {},
                "help_text": "",
                "list_id": list_id,
                "_links": [],
            })
        })
        .collect();
    Ok(Json(json!({
        "merge_fields": fields,
        "list_id": list_id,
        "total_items": fields.len(),
        "_links": [],
    })))
}

/// `POST /3.0/lists/{list_id}`: batch subscribe.
pub(super) async fn batch_subscribe(
    State(shared): State<Arc<Shared>>,
    Path(list_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let body = parse_json(&body)?;
    let flags = BatchFlags {
        skip_merge_validation: query_flag(&query, "skip_merge_validation"),
        skip_duplicate_check: query_flag(&query, "skip_duplicate_check"),
    };
    let mut state = shared.lock();
    batch::subscribe(&shared.config, &mut state, &list_id, &body, flags).map(Json)
}
