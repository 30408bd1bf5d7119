-- How the devices of a plain assignment treat it (`forced`, `soft`, `download_only`), as
-- campaigns already record in their spec; existing assignments were all forced.
ALTER TABLE assignments ADD COLUMN update_type TEXT NOT NULL DEFAULT 'forced';
