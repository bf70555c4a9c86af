-- reco.similar_items gains a kind (issue 18): 'also_bought' (co-occurrence: every row so far) and
-- 'looks_like' (nearest neighbours by text embedding). The tables are created by the recommend job's
-- swap (recomart.recommend.tables.SIMILAR_ITEMS, which has the column and key already); this brings a
-- live table and the previous one (what a rollback swaps back in) published before it to the same shape:
-- the column, its existing rows as 'also_bought', and the unique key (item_id, kind, rank).
do $$
declare
    suffix text;
begin
    foreach suffix in array array['', '_previous'] loop
        if to_regclass(format('reco.%I', 'similar_items' || suffix)) is not null
           and not exists (
               select from information_schema.columns
                where table_schema = 'reco' and table_name = 'similar_items' || suffix and column_name = 'kind')
        then
            execute format(
                'alter table reco.%I add column kind text not null default %L',
                'similar_items' || suffix, 'also_bought');
            execute format('alter table reco.%I alter column kind drop default', 'similar_items' || suffix);
            execute format('drop index if exists reco.%I', 'similar_items' || suffix || '_i0');
            execute format(
                'create unique index %I on reco.%I (item_id, kind, rank)',
                'similar_items' || suffix || '_i0', 'similar_items' || suffix);
        end if;
    end loop;
end
$$;
