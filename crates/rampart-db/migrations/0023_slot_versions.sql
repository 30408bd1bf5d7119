-- What each slot holds (issue 17, decision 0049).
--
-- The firmware version of each slot the device reported in its poll facts, as a JSON object of
-- slot name -> version (like `slots`, slot name -> state). NULL: the device did not say (an
-- older agent, a hawkBit client): risk then knows only the running version. The inactive slot
-- is what a rollback boots, so risk posture reports a release it holds that an advisory
-- applies to as the device's fallback exposure.
ALTER TABLE devices ADD COLUMN slot_versions TEXT;
