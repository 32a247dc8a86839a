-- A load that slides the record's TTL only when this release wrote it.
-- KEYS[1]: the record's key. ARGV[1]: the TTL in seconds.
--
-- Returns the record (nil when the key is gone). Its TTL is set to ARGV[1]
-- only when it starts with this release's header ({"format":1,"version":),
-- as GETEX key EX ttl would: a later release's record (any other format,
-- however spelled) keeps the expiry that release gave it, and so does
-- anything else under the key. Something other than a string under the key
-- answers WRONGTYPE, as GET does.
local record = redis.pcall('GET', KEYS[1])
if type(record) == 'string' and string.sub(record, 1, 22) == '{"format":1,"version":' then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return record
