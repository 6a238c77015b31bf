//! Removing members: archive (`DELETE …/members/{x}`) and permanent delete
//! (`POST …/members/{x}/actions/delete-permanent`).

use crate::ids::now_timestamp;
use crate::member::{Record, Status};
use crate::problem::Problem;
use crate::state::State;

/// Archives the member at `segment`, remembering its status.
///
/// An archived member gets 204 again, or 404 with
/// [`Behaviour::archived_delete_not_found`](crate::Behaviour::archived_delete_not_found). A
/// cleaned member gets 204 without change while
/// [`Behaviour::cleaned_delete_ignored`](crate::Behaviour::cleaned_delete_ignored) is set.
pub(crate) fn archive(state: &mut State, list_id: &str, segment: &str) -> Result<(), Problem> {
    let behaviour = state.behaviour;
    let list = state
        .lists
        .get_mut(list_id)
        .ok_or_else(Problem::not_found)?;
    let hash = list.resolve(segment).ok_or_else(Problem::not_found)?;
    let Some(record) = list.members.get_mut(&hash) else {
        return Err(Problem::not_found());
    };
    match record.status {
        Status::Archived if behaviour.archived_delete_not_found => Err(Problem::not_found()),
        Status::Archived => Ok(()),
        Status::Cleaned if behaviour.cleaned_delete_ignored => Ok(()),
        _ => {
            mark_archived(record);
            Ok(())
        }
    }
}

pub(crate) fn mark_archived(record: &mut Record) {
    if record.status != Status::Archived {
        record.archived_from = Some(record.status);
        record.status = Status::Archived;
        record.last_changed = now_timestamp();
    }
}

/// Deletes the member at `segment` and puts its hash on the list's forgotten set, so that
/// every later POST or PUT of the address fails with Forgotten Email Not Subscribed.
pub(crate) fn delete_permanent(
    state: &mut State,
    list_id: &str,
    segment: &str,
) -> Result<(), Problem> {
    let list = state
        .lists
        .get_mut(list_id)
        .ok_or_else(Problem::not_found)?;
    let hash = list.resolve(segment).ok_or_else(Problem::not_found)?;
    list.members.remove(&hash);
    list.forgotten.insert(hash);
    Ok(())
}
