-- cellframe store schema (applied on every open; every statement is idempotent).
--
-- Profiles are tables: each level of a screen (cells, images, wells, treatments)
-- is a table with Metadata_* key columns and one float32 column per feature.
-- Feature tables are created by the step that writes them (their columns depend
-- on the data); the tables below have a fixed shape.

-- Which step made each table, with which parameters and cellframe version, and when.
CREATE SEQUENCE IF NOT EXISTS cellframe_provenance_id;
CREATE TABLE IF NOT EXISTS cellframe_provenance (
    id                BIGINT PRIMARY KEY DEFAULT nextval('cellframe_provenance_id'),
    table_name        VARCHAR NOT NULL,
    step              VARCHAR NOT NULL,
    parameters        JSON,
    cellframe_version VARCHAR NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    n_rows            BIGINT,
    source            VARCHAR
);

-- Key/value facts about the store itself (schema version, ...).
CREATE TABLE IF NOT EXISTS cellframe_info (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR
);

-- Platemap: one row per plate and well; extra platemap columns are added as
-- Metadata_* columns when a platemap carries them.
CREATE TABLE IF NOT EXISTS platemap (
    Metadata_Plate     VARCHAR NOT NULL,
    Metadata_Well      VARCHAR NOT NULL,
    Metadata_Treatment VARCHAR,
    Metadata_MoA       VARCHAR,
    Metadata_Control   VARCHAR
);

-- Images: one row per site and channel, where the pixels live. An image is
-- (Metadata_Plate, Metadata_Well, Metadata_Site), the key every writer replaces
-- by: writing a site's rows replaces that site's stored rows and no others
-- (Store.write(..., replace_keys=[plate, well, site])).
CREATE TABLE IF NOT EXISTS images (
    Metadata_Plate VARCHAR NOT NULL,
    Metadata_Well  VARCHAR NOT NULL,
    Metadata_Site  INTEGER NOT NULL,
    Channel        VARCHAR NOT NULL,
    Path           VARCHAR NOT NULL,
    Frame          INTEGER,
    Height         INTEGER,
    Width          INTEGER
);

-- Objects found by segmentation (or taken from CellProfiler locations),
-- ready for cropping. Written per image and object type: segmenting a site
-- again replaces (or, without --replace, refuses) the objects of that
-- (Metadata_Plate, Metadata_Well, Metadata_Site, Object) only.
CREATE TABLE IF NOT EXISTS objects (
    Metadata_Plate        VARCHAR NOT NULL,
    Metadata_Well         VARCHAR NOT NULL,
    Metadata_Site         INTEGER NOT NULL,
    Metadata_ObjectNumber INTEGER NOT NULL,
    Object                VARCHAR NOT NULL,
    Location_Center_X     DOUBLE NOT NULL,
    Location_Center_Y     DOUBLE NOT NULL,
    AreaShape_Area        DOUBLE,
    BoundingBox_MinX      INTEGER,
    BoundingBox_MinY      INTEGER,
    BoundingBox_MaxX      INTEGER,
    BoundingBox_MaxY      INTEGER
);
