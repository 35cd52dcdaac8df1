import os

from django.http import HttpRequest, HttpResponse
from django.urls import path

VERSION = "1"


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"version={VERSION} pid={os.getpid()}")


urlpatterns = [path("", index)]
