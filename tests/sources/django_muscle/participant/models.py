"""participant_participant."""

from __future__ import annotations

from django.db import models


class Participant(models.Model):
    unique_hash = models.CharField(max_length=64, unique=True)
    country_code = models.CharField(max_length=3)
    access_info = models.CharField(max_length=512, null=True)
    participant_id_url = models.CharField(max_length=128, null=True, unique=True)

    class Meta:
        managed = False
        db_table = "participant_participant"
