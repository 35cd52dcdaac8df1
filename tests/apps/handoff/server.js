// A non-Python app that takes its socket the systemd way: LISTEN_FDS=1, LISTEN_PID, fd 3.
const http = require("http");
const fs = require("fs");

const VERSION = 0;
const handed = process.env.LISTEN_FDS === "1" && process.env.LISTEN_PID === String(process.pid);
const server = http.createServer((req, res) => {
  const body = JSON.stringify({
    version: VERSION,
    pid: process.pid,
    listenFds: process.env.LISTEN_FDS || null,
    listenPid: process.env.LISTEN_PID || null,
    names: process.env.LISTEN_FDNAMES || null,
    fd3: fs.readlinkSync("/proc/self/fd/3"),
  });
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(body + "\n");
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
if (handed) {
  server.listen({ fd: 3 });
} else {
  server.listen(Number(process.env.PORT), "127.0.0.1");
}
