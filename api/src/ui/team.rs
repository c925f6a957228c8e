//! The Team page (TEAM-001..006, SEC-001): members and their roles, invitations (the accept
//! link shown after inviting, pending ones listed with Revoke) and API keys (a new key shown
//! once). Changes go through the JSON API from `team.js`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::invitations::{self, InvitationStatus};
use domain::{Permission, Role, tenancy};
use uuid::Uuid;

use super::pages::failed;
use super::{Nav, Viewer, page_of, render};
use crate::app::AppState;

/// A pending invitation as the page lists it.
struct PendingInvitation {
    id: Uuid,
    email: String,
    role: Role,
    expires_at: DateTime<Utc>,
    /// Who invited, by name and email; empty when unknown (an invitation made with an API key).
    invited_by: String,
}

#[derive(Template)]
#[template(path = "team.html")]
struct TeamPage {
    nav: Nav,
    members: Vec<tenancy::Member>,
    /// Pending invitations, for those who manage the team.
    invitations: Vec<PendingInvitation>,
    keys: Vec<domain::keys::ApiKey>,
    me: Option<Uuid>,
    /// The viewer as the invitations list names inviters (for a row added after inviting).
    me_label: String,
}

impl TeamPage {
    fn is_me(&self, id: &Uuid) -> bool {
        self.me.as_ref() == Some(id)
    }
}

/// Members and roles, pending invitations, API keys.
pub async fn team(State(state): State<AppState>, v: Viewer) -> Response {
    let members = match tenancy::list_members(&state.db, v.tenant_id, page_of(None, 200)).await {
        Ok(p) => p.items,
        Err(e) => return failed(&e),
    };
    let nav = v.nav("team");
    let invitations = if nav.can(Permission::ManageTeam) {
        match pending_invitations(&state, v.tenant_id, &members).await {
            Ok(list) => list,
            Err(e) => return failed(&e),
        }
    } else {
        Vec::new()
    };
    let keys = if nav.can(Permission::ManageApiKeys) {
        match domain::keys::list(&state.db, v.tenant_id, false, page_of(None, 200)).await {
            Ok(p) => p.items,
            Err(e) => return failed(&e),
        }
    } else {
        Vec::new()
    };
    let me = v.principal.user_id();
    let me_label = members
        .iter()
        .find(|m| Some(m.user_id) == me)
        .map(member_label)
        .unwrap_or_default();
    render(&TeamPage {
        nav,
        members,
        invitations,
        keys,
        me,
        me_label,
    })
}

/// A member as the invitations list names its inviter.
fn member_label(m: &tenancy::Member) -> String {
    format!("{} ({})", m.name, m.email)
}

/// The tenant's pending invitations, with who sent each (a member, or someone since removed).
async fn pending_invitations(
    state: &AppState,
    tenant_id: Uuid,
    members: &[tenancy::Member],
) -> Result<Vec<PendingInvitation>, domain::Error> {
    let list = invitations::list(
        &state.db,
        tenant_id,
        Some(InvitationStatus::Pending),
        page_of(None, 200),
    )
    .await?
    .items;
    let mut names: HashMap<Uuid, String> = members
        .iter()
        .map(|m| (m.user_id, member_label(m)))
        .collect();
    let mut out = Vec::with_capacity(list.len());
    for i in list {
        let invited_by = match i.invited_by.map(|id| names.entry(id)) {
            Some(Entry::Occupied(known)) => known.get().clone(),
            // Someone no longer a member.
            Some(Entry::Vacant(slot)) => {
                let label = match tenancy::user(&state.db, *slot.key()).await {
                    Ok(u) => format!("{} ({})", u.name, u.email),
                    Err(domain::Error::NotFound { .. }) => String::new(),
                    Err(e) => return Err(e),
                };
                slot.insert(label).clone()
            }
            None => String::new(),
        };
        out.push(PendingInvitation {
            id: i.id,
            email: i.email,
            role: i.role,
            expires_at: i.expires_at,
            invited_by,
        });
    }
    Ok(out)
}
