<html><body><p>custom page v1</p>
<footer>pid=$pid</footer></body></html>
