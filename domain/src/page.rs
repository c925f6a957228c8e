//! Cursor pagination shared by every list: ids are UUIDv7, so "after this id" is a stable cursor
//! that survives inserts, and the cursor is opaque to clients (base64 of the id).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use uuid::Uuid;

use crate::error::Error;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// A validated page request: newest first, items strictly older than `after`.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub after: Option<Uuid>,
    pub limit: u32,
}

impl PageRequest {
    pub fn parse(cursor: Option<&str>, limit: Option<u32>) -> Result<Self, Error> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(c) => Some(
                decode_cursor(c)
                    .ok_or_else(|| Error::invalid("cursor", "is not a cursor this API issued"))?,
            ),
        };
        Ok(Self { after, limit })
    }

    /// The SQL `limit` to ask for: one more than the page, to know whether another page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in order; `id` names each row's cursor.
    pub fn from_rows(mut rows: Vec<T>, req: PageRequest, id: impl Fn(&T) -> Uuid) -> Self {
        let limit = req.limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| encode_cursor(id(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        let req = PageRequest::parse(Some(&encode_cursor(id)), Some(10)).ok();
        assert_eq!(req.and_then(|r| r.after), Some(id));
        assert!(PageRequest::parse(Some("'; drop table users; --"), None).is_err());
        assert!(PageRequest::parse(None, Some(0)).is_err());
        assert!(PageRequest::parse(None, Some(MAX_LIMIT + 1)).is_err());
    }

    #[test]
    fn a_full_page_carries_the_cursor_of_its_last_item() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let req = PageRequest {
            after: None,
            limit: 2,
        };
        let page = Page::from_rows(ids.clone(), req, |id| *id);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next_cursor, Some(encode_cursor(ids[1])));
        let last = Page::from_rows(ids[..2].to_vec(), req, |id| *id);
        assert_eq!(last.next_cursor, None);
    }
}
