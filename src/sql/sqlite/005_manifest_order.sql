-- The order of a remote study's instances in the manifest it was recorded
-- from (0, 1, ...; NULL for what the PACS lists). Until an instance has
-- arrived its InstanceNumber is unknown: listings of a remote series keep
-- the manifest's order (the source's, by instance number) instead of
-- moving instances about as they arrive, so that the instance a viewer
-- takes as the middle is the one pulled first.
ALTER TABLE instances ADD COLUMN listed INTEGER;
