-- A synced workflow's definition is a document read and written whole (never queried by path):
-- `json` stores the text as sent after a syntax check, where `jsonb` parsed it into its binary
-- form on every write and printed it back on every read. On a sync of 250-workflow pages
-- (2.2 MB of JSON each) that parse was ~15 ms of each page's ~50 ms insert. Still lz4-compressed.
alter table env_workflows alter column definition type json using definition::json;
alter table env_workflows alter column definition set compression lz4;
