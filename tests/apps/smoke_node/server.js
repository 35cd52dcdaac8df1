// A Node.js app (configs/node.toml): pyair runs any command, not only Python.
// The port comes from $PORT (3000 by default), as the config's [env] sets it.
const http = require("http");

const port = Number(process.env.PORT || 3000);
http
  .createServer((request, response) => {
    response.writeHead(200, { "Content-Type": "text/plain" });
    response.end(`hello from node, pid ${process.pid}\n`);
  })
  .listen(port, "127.0.0.1");
