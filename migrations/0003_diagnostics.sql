-- The diagnostics ledger: the `diagnostics.ledger` job kind records every execution of each of
-- its steps here, so self-tests and chaos tests can prove exactly-once checkpoints.
create table diagnostics_ledger (
    id         bigserial primary key,
    run_id     uuid not null,
    step       text not null,
    attempt    integer not null,
    created_at timestamptz not null default now()
);
create index diagnostics_ledger_run on diagnostics_ledger (run_id, step);
