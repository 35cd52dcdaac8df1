// A node app that reads its template once at start: pyair has no agent in it, so a template
// edit falls back to a restart. Listens on 127.0.0.1:$PORT.
const fs = require("fs");
const http = require("http");
const path = require("path");

const page = fs.readFileSync(path.join(__dirname, "templates", "page.html"), "utf8");
http
  .createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end(page.replace("{{ pid }}", String(process.pid)));
  })
  .listen(Number(process.env.PORT), "127.0.0.1");
