"""A stand-in stylesheet compiler: styles/*.scss -> static/site.css ($name: value; replaced).

Every run appends a line to runs.log (tests count runs).
"""

import pathlib
import re

root = pathlib.Path(__file__).resolve().parent
sources = sorted((root / "styles").glob("**/*.scss"))
variables: dict[str, str] = {}
body = []
for source in sources:
    for line in source.read_text().splitlines():
        match = re.fullmatch(r"\s*\$(\w+)\s*:\s*(.+?);\s*", line)
        if match:
            variables[match.group(1)] = match.group(2)
        else:
            body.append(line)
css = re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), "\n".join(body))
(root / "static").mkdir(exist_ok=True)
(root / "static" / "site.css").write_text(css + "\n")
with open(root / "runs.log", "a") as log:
    log.write(f"{len(sources)}\n")
print(f"compiled {len(sources)} file(s)")
