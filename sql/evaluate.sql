-- Evaluation queries for analysts (temporary macros; they live in the connection).
-- Load them with cellframe.evaluate.register_evaluate_sql(store), or run
-- store.connection.execute(cellframe.store.load_sql("evaluate")).
-- Builds on cf_cosine(a, b) from macros.sql.
--
-- Feature columns are every column not starting with 'Metadata_'; pass a
-- table (or view) holding only metadata and numeric features.

-- Each profile's metadata plus its features gathered into one DOUBLE[] list.
CREATE OR REPLACE TEMP MACRO cf_vectors(tbl) AS TABLE
    SELECT COLUMNS(lambda c: starts_with(c, 'Metadata_')),
           list_value(*COLUMNS(lambda c: NOT starts_with(c, 'Metadata_')))::DOUBLE[] AS features
    FROM query_table(tbl);

-- The k profiles most similar (cosine) to every profile whose key_col equals
-- key_value, the query itself excluded.  Example:
--   FROM cf_top_k_similar('wells', 'Metadata_Well', 'B03', 10);
-- Ties are broken by row position so the answer is stable.
CREATE OR REPLACE TEMP MACRO cf_top_k_similar(tbl, key_col, key_value, k) AS TABLE
    WITH v AS MATERIALIZED (
        SELECT *, row_number() OVER () - 1 AS cf_row FROM cf_vectors(tbl)
    ),
    q AS (
        SELECT cf_row AS query_row, features AS query_features
        FROM v
        WHERE CAST(COLUMNS(key_col) AS VARCHAR) = CAST(key_value AS VARCHAR)
    )
    SELECT q.query_row,
           v.* EXCLUDE (features),
           cf_cosine(q.query_features, v.features) AS similarity,
           row_number() OVER (
               PARTITION BY q.query_row
               ORDER BY cf_cosine(q.query_features, v.features) DESC NULLS LAST, v.cf_row
           ) AS rank
    FROM q JOIN v ON v.cf_row <> q.query_row
    QUALIFY rank <= k
    ORDER BY q.query_row, rank;

-- Cosine similarity of the profiles whose key_col equals a and b (all pairs
-- when a key holds several rows, e.g. replicate wells of two treatments).
CREATE OR REPLACE TEMP MACRO cf_pair_similarity(tbl, key_col, a, b) AS TABLE
    WITH v AS MATERIALIZED (
        SELECT CAST(COLUMNS(key_col) AS VARCHAR) AS cf_key, features FROM cf_vectors(tbl)
    )
    SELECT x.cf_key AS key_a, y.cf_key AS key_b, cf_cosine(x.features, y.features) AS similarity
    FROM v x JOIN v y ON x.cf_key = CAST(a AS VARCHAR) AND y.cf_key = CAST(b AS VARCHAR);

-- Per-MoA summary of a per-query metrics table written by `cellframe evaluate`
-- (columns average_precision, folds_of_enrichment, hit_at_top and the label
-- column).  Several labels joined by '|' count for each label.  NaN metrics
-- are left out of the means (NaN sorts above every number in DuckDB, so one
-- NaN would head the ranking) and counted in n_nan; a null hit is not a hit.
-- Example:
--   FROM cf_moa_summary('wells_eval_per_query', 'Metadata_MoA');
CREATE OR REPLACE TEMP MACRO cf_moa_summary(tbl, label_col) AS TABLE
    WITH labelled AS (
        SELECT trim(unnest(string_split(CAST(COLUMNS(label_col) AS VARCHAR), '|'))) AS moa,
               CAST(average_precision AS DOUBLE) AS average_precision,
               CAST(folds_of_enrichment AS DOUBLE) AS folds_of_enrichment,
               hit_at_top
        FROM query_table(tbl)
    )
    SELECT moa,
           count(*) AS n_queries,
           avg(average_precision) FILTER (WHERE NOT isnan(average_precision))
               AS mean_average_precision,
           avg(folds_of_enrichment) FILTER (WHERE NOT isnan(folds_of_enrichment))
               AS mean_folds_of_enrichment,
           CAST(count(*) FILTER (WHERE hit_at_top) AS BIGINT) AS hits_at_top,
           CAST(count(*) FILTER (WHERE isnan(average_precision) OR isnan(folds_of_enrichment))
                AS BIGINT) AS n_nan
    FROM labelled
    WHERE moa <> ''
    GROUP BY moa
    ORDER BY mean_average_precision DESC NULLS LAST, moa;
