-- A run taken back from a dead worker (or a lapsed lease) is charged a failed attempt only from
-- its second such loss on. A worker keeps claimed runs waiting in memory (prefetch, up to eight
-- times its slots by default) and the reaper cannot tell those from the runs it was executing:
-- charging every loss made one killed worker spend a retry of every run it held, and failed the
-- waiting runs of a kind with max_attempts = 1 that never started. A run that kills its worker
-- every time (a poison pill) is still failed in the end: after max_attempts + 1 losses. A user's
-- retry of a failed run resets this with the retry budget.
alter table engine_runs add column losses integer not null default 0;
