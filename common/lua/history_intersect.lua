-- One page of the members (command ids, audit entry ids) that are in every given
-- index, newest first: walks the index with the fewest entries in the score (time)
-- range, by rank, and keeps the members every other index holds. Work is bounded by
-- the smallest index in the range, not by the number of members stored. Returns {total, id1, score1, id2, score2, ...}:
-- total counts every match in the range (whatever the cursor and offset); the ids are
-- the matches after the cursor, past `offset` of them, at most `count`.
--
-- KEYS[1 .. N] the indexes (sorted sets: command id -> submitted score), N >= 2
-- ARGV[1] highest score (inclusive, or '+inf')   ARGV[2] lowest score (inclusive, or '-inf')
-- ARGV[3] cursor score ('' for none)            ARGV[4] cursor command id
-- ARGV[5] offset (matches skipped after the cursor)  ARGV[6] count (matches returned)
-- ARGV[7] ranks read per step
local high, low = ARGV[1], ARGV[2]
local after_score, after_id = tonumber(ARGV[3]), ARGV[4]
local offset, count, step = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

local driving, fewest = 1, nil
for i = 1, #KEYS do
  local n = redis.call('ZCOUNT', KEYS[i], low, high)
  if fewest == nil or n < fewest then driving, fewest = i, n end
end
local total, skipped, page = 0, 0, {}
if fewest == 0 then return {0} end

-- Ranks in ZREVRANGE order: the first is the newest entry at or below `high`.
local above = 0
if high ~= '+inf' then above = redis.call('ZCOUNT', KEYS[driving], '(' .. high, '+inf') end
local first, last = above, above + fewest - 1
for start = first, last, step do
  local stop = math.min(start + step - 1, last)
  local entries = redis.call('ZREVRANGE', KEYS[driving], start, stop, 'WITHSCORES')
  for j = 1, #entries, 2 do
    local id, score_text = entries[j], entries[j + 1]
    local everywhere = true
    for i = 1, #KEYS do
      if i ~= driving and not redis.call('ZSCORE', KEYS[i], id) then
        everywhere = false
        break
      end
    end
    if everywhere then
      total = total + 1
      local score = tonumber(score_text)
      local past_cursor = after_score == nil or score < after_score
        or (score == after_score and id < after_id)
      if past_cursor then
        if skipped < offset then
          skipped = skipped + 1
        elseif #page < 2 * count then
          page[#page + 1] = id
          page[#page + 1] = score_text
        end
      end
    end
  end
end
local answer = {total}
for k = 1, #page do answer[#answer + 1] = page[k] end
return answer
