"""Sign-up and following; sign-in, sign-out and password reset are Django's own views."""

from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from streams.models import Channel

from . import actions
from .forms import SignUpForm
from .requests import SignedInRequest


def _next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


def sign_up(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("directory")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return HttpResponseRedirect(_next(request, "/"))
    return render(request, "registration/signup.html", {"form": form, "next": _next(request, "")})


@login_required
@require_POST
def follow(request: SignedInRequest, slug: str) -> HttpResponse:
    channel = get_object_or_404(Channel.objects.select_related("owner"), slug=slug)
    if request.POST.get("follow", "1") == "1":
        actions.follow(request.user, channel)
    else:
        actions.unfollow(request.user, channel)
    return HttpResponseRedirect(_next(request, f"/c/{channel.slug}"))
