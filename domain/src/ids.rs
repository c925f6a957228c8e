//! Identifiers: UUIDv7 everywhere, so ids sort by creation time and make stable cursors.

use uuid::Uuid;

pub fn new_id() -> Uuid {
    Uuid::now_v7()
}
