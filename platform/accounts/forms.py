from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm, UsernameField
from django.contrib.auth.models import User


class SignUpForm(UserCreationForm[User]):
    email = forms.EmailField(
        required=True, help_text="For resetting your password; never shown to anyone."
    )

    class Meta:  # UserCreationForm.Meta's, with the address
        model = get_user_model()
        fields = ("username", "email")
        field_classes = {"username": UsernameField}

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"].strip().lower()
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this address exists: sign in or reset "
                                        "its password.")
        return email

    def save(self, commit: bool = True) -> User:
        from .actions import sign_up

        return sign_up(
            self.cleaned_data["username"], self.cleaned_data["email"],
            self.cleaned_data["password1"],
        )
