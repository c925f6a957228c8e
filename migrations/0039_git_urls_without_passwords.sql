-- Git remote URLs with a password or token in them (`https://user:token@host/…`) are refused on
-- save since session 13: a URL is shown to viewers, in preflight messages and in the audit log.
-- Rows saved before that still show theirs. This takes the password out of the stored URLs of
-- environments' Git backups (`environment_git.url`) and tenants' canonical repositories
-- (`canonical_repos.url`), keeping the user name:
--
--   https://user:token@host/repo.git  ->  https://user@host/repo.git   (any scheme)
--   https://:token@host/repo.git      ->  https://host/repo.git
--   user:token@host:owner/repo.git    ->  user@host:owner/repo.git     (scp-like, as libgit2
--                                          reads it: the password ends at the first `@`)
--
-- The password is not moved anywhere: credentials are sealed in `secrets` with the server's key,
-- which SQL cannot do. A repository whose `auth_kind` is `token` or `ssh_key` authenticates with
-- its sealed secret (`secret_id`) and loses nothing. One with `auth_kind` `none` that relied on
-- the URL's password fails its next backup or sync on authentication until an admin saves the
-- repository again with `auth` `token` and the token as `secret`. The Git cache's `origin` is
-- set from the stored URL on every use, so it loses the password too.

create or replace function pg_temp.url_without_password(url text) returns text
language sql immutable as $$
    select case
        when url ~ '^[A-Za-z][A-Za-z0-9+.-]*://' then
            regexp_replace(
                regexp_replace(url, '^([A-Za-z][A-Za-z0-9+.-]*://):[^/?#]*@', '\1'),
                '^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]+):[^/?#]*@', '\1@')
        else regexp_replace(url, '^([^/:@]+):[^/@]*@', '\1@')
    end
$$;

update environment_git
set url = pg_temp.url_without_password(url), updated_at = now()
where url <> pg_temp.url_without_password(url);

update canonical_repos
set url = pg_temp.url_without_password(url), updated_at = now()
where url <> pg_temp.url_without_password(url);

drop function pg_temp.url_without_password(text);
