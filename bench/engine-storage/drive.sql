do $$
declare
    w uuid := gen_random_uuid();
    c json;
    ids uuid[];
    atts int[];
    n int;
    f int[];
begin
    select json_agg(x) into c from engine_claim(w, null, 32, '30 s', '{}') x;
    commit;
    loop
        exit when c is null;
        select array_agg((e->>'id')::uuid), array_agg((e->>'attempt')::int) into ids, atts from json_array_elements(c) e;
        n := cardinality(ids);
        select x.fenced, x.claimed into f, c from engine_commit(
            array(select generate_series(1, n)), ids, atts, array_fill(w, array[n]),
            array_fill('step-0'::text, array[n]), array_fill('1'::jsonb, array[n]), array_fill(now(), array[n]),
            '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',
            array(select generate_series(1, n)), ids, atts, array_fill(w, array[n]), array_fill('null'::jsonb, array[n]),
            w, null, 32, '30 s', '{}') x;
        commit;
    end loop;
end $$;
