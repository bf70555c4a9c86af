-- JIT compilation for the warehouse's queries, without LLVM's inlining and optimization passes.
-- A daily `dbt build`, the Great Expectations suites and the data report run many queries whose
-- planned cost passes jit_inline_above_cost and jit_optimize_above_cost (500,000 by default) but which
-- run for 0.1 to 3 s: inlining and optimizing their expressions took up to 1.3 s a query (a uniqueness
-- test of 3.0 s at 10M events, 1.25 s of it JIT). Plain JIT (jit_above_cost) stays: it sped up a 6M-row
-- create table of user_item_ratings from 7.5 s to 7.2 s, where inlining and optimization gave 6.8 s.
-- At 10M events a daily dbt build took 44.5 s with this setting against 50.1 s without it.
-- Set on the database, for new sessions; a role that does not own the database keeps the server's.
do $$
begin
    execute format('alter database %I set jit_inline_above_cost = -1', current_database());
    execute format('alter database %I set jit_optimize_above_cost = -1', current_database());
exception when insufficient_privilege then
    raise notice 'not the owner of database %: JIT settings left as the server has them', current_database();
end
$$;
