-- The versioned compare-and-set (and compare-and-delete) of a pipeline state
-- record. KEYS[1]: the record's key. ARGV[1]: the version the writer loaded.
-- ARGV[2], ARGV[3] (optional): the new record and its TTL in seconds.
--
-- The stored version is read from the record's fixed header
-- ({"format":1,"version":N,...}) without decoding the record. When it matches
-- ARGV[1], the record is replaced (or deleted when no new record is given)
-- and 1 is returned; 0 when the key is gone; the stored record when its
-- version differs, so the writer can merge without another read. A record
-- of any other format (a later release's, however spelled) has no version
-- this matches: it is returned, never replaced or deleted.
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
if string.match(current, '^{"format":1,"version":(%d+),') ~= ARGV[1] then
  return current
end
if ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
