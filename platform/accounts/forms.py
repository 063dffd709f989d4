from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm


class SignUpForm(UserCreationForm):  # type: ignore[type-arg]
    email = forms.EmailField(
        required=True, help_text="For resetting your password; never shown to anyone."
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"].strip().lower()
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this address exists: sign in or reset "
                                        "its password.")
        return email

    def save(self, commit: bool = True) -> Any:
        from .actions import sign_up

        return sign_up(
            self.cleaned_data["username"], self.cleaned_data["email"],
            self.cleaned_data["password1"],
        )
