-- The PRD's plan table gates "Role-Based Access" (Free: no; Pro, Agency, Enterprise: yes). It
-- is a tenant-wide flag: without it every member a tenant adds is an admin, and members cannot
-- be given the viewer or developer role. Members who already hold such a role keep it after a
-- downgrade (taking access away silently would be worse than keeping a restriction); only new
-- assignments are refused. Plans other than the Free ones (the seeded paid tiers and any plan a
-- platform admin created) include it, as paid plans do in the table.
insert into features (key, kind, scope, name, description, sort) values
    ('role_based_access', 'flag', 'tenant', 'Role-based access',
     'Members with the viewer or developer role (without it every member is an admin)', 15);

insert into plan_features (plan_id, feature, value)
select id, 'role_based_access', to_jsonb(key <> 'free') from plans
on conflict do nothing;
