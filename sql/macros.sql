-- Macros available in every cellframe store session (temporary: they live in
-- the connection, so opening a store never writes to it).

-- Cosine similarity of two equal-length float lists, e.g. built with
-- list_value(f1, f2, ...) or a LIST column.  NULL when either has zero norm.
CREATE OR REPLACE TEMP MACRO cf_cosine(a, b) AS
    CASE WHEN list_dot_product(a, a) = 0 OR list_dot_product(b, b) = 0 THEN NULL
         ELSE list_dot_product(a, b) / sqrt(list_dot_product(a, a) * list_dot_product(b, b))
    END;

-- Normalise a well name so that 'a1', 'A1' and 'A01' all become 'A01'.
CREATE OR REPLACE TEMP MACRO cf_well(w) AS
    upper(regexp_extract(trim(w), '^([A-Za-z]+)', 1))
    || lpad(regexp_extract(trim(w), '([0-9]+)$', 1), 2, '0');
