import os

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import path


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_to_string("page.html", {"pid": os.getpid()}))


urlpatterns = [path("", index)]
