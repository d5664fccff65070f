-- GET $URL_PATH, optionally with If-None-Match: $ETAG.
package.path = package.path .. ";" .. (os.getenv("WRK_DIR") or ".") .. "/?.lua"
local common = require("common")
setup = common.setup
done = common.done
local etag = os.getenv("ETAG")
if etag and etag ~= "" then wrk.headers["If-None-Match"] = etag end
wrk.path = os.getenv("URL_PATH")
