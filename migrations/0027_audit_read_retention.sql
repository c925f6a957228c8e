-- The runs API audits its reads (list, detail, stream opens): many more rows than changes, kept
-- for `WFO_READ_AUDIT_RETENTION` and pruned hourly (changes are kept). The prune finds them by
-- time through this index of read entries alone.
create index audit_logs_reads on audit_logs (occurred_at)
    where action in ('run.listed', 'run.viewed', 'run.events_opened', 'run.feed_opened');
