-- Sign-in throttling (SEC): failed password checks counted per account + client address, per
-- client address, and per account, in a sliding window; past a threshold each further failure
-- locks that key for a growing time. Rows are small, one per key; a success clears the account
-- keys; a maintenance sweep drops the stale ones.
create table login_throttle (
    key          text primary key,
    failures     integer not null,
    window_start timestamptz not null,
    locked_until timestamptz
);
create index login_throttle_stale on login_throttle (window_start);
