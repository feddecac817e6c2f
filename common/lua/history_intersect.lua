-- One page of the members (command ids, audit entry ids) that are in every given
-- index, newest first, and how many there are in all. The page walks the index with
-- the fewest entries in the score (time) range, from the cursor on, keeping the members
-- every other index holds, and stops once the page is full. The total is counted by
-- Redis itself (ZINTERCARD), over the range of that smallest index. Returns
-- {total, id1, score1, id2, score2, ...}: total counts every match in the range
-- (whatever the cursor and offset); the ids are the matches after the cursor, past
-- `offset` of them, at most `count`.
--
-- KEYS[1 .. N] the indexes (sorted sets scored by time), N >= 2
-- KEYS[N + 1] a scratch key of the caller's (written and deleted here)
-- ARGV[1] highest score (inclusive, or '+inf')   ARGV[2] lowest score (inclusive, or '-inf')
-- ARGV[3] cursor score ('' for none)            ARGV[4] cursor member
-- ARGV[5] offset (matches skipped after the cursor)  ARGV[6] count (matches returned)
-- ARGV[7] ranks read per step
local scratch = KEYS[#KEYS]
local n = #KEYS - 1
local high, low = ARGV[1], ARGV[2]
local after_score, after_id = tonumber(ARGV[3]), ARGV[4]
local offset, count, step = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

local driving, fewest = 1, nil
for i = 1, n do
  local found = redis.call('ZCOUNT', KEYS[i], low, high)
  if fewest == nil or found < fewest then driving, fewest = i, found end
end
if fewest == 0 then return {0} end

local others = {}
for i = 1, n do
  if i ~= driving then others[#others + 1] = KEYS[i] end
end
local total
if low == '-inf' and high == '+inf' then
  total = redis.call('ZINTERCARD', n, unpack(KEYS, 1, n))
else
  redis.call('ZRANGESTORE', scratch, KEYS[driving], low, high, 'BYSCORE')
  total = redis.call('ZINTERCARD', #others + 1, scratch, unpack(others))
  redis.call('DEL', scratch)
end

-- Ranks in ZREVRANGE order: `top` is the newest entry at or below `high`.
local top = 0
if high ~= '+inf' then top = redis.call('ZCOUNT', KEYS[driving], '(' .. high, '+inf') end
local last = top + fewest - 1
local first = top
if after_score ~= nil then
  local rank = redis.call('ZREVRANK', KEYS[driving], after_id)
  if rank then
    first = math.max(top, rank + 1)
  else  -- the cursor's member left the index: start at its score, ties tested below
    first = math.max(top, redis.call('ZCOUNT', KEYS[driving], '(' .. ARGV[3], '+inf'))
  end
end

local skipped, page = 0, {}
local start = first
while start <= last and #page < 2 * count do
  local stop = math.min(start + step - 1, last)
  local entries = redis.call('ZREVRANGE', KEYS[driving], start, stop, 'WITHSCORES')
  for j = 1, #entries, 2 do
    local id, score_text = entries[j], entries[j + 1]
    local everywhere = true
    for _, other in ipairs(others) do
      if not redis.call('ZSCORE', other, id) then
        everywhere = false
        break
      end
    end
    if everywhere then
      local score = tonumber(score_text)
      local past_cursor = after_score == nil or score < after_score
        or (score == after_score and id < after_id)
      if past_cursor then
        if skipped < offset then
          skipped = skipped + 1
        else
          page[#page + 1] = id
          page[#page + 1] = score_text
          if #page >= 2 * count then break end
        end
      end
    end
  end
  start = stop + 1
end
local answer = {total}
for k = 1, #page do answer[#answer + 1] = page[k] end
return answer
