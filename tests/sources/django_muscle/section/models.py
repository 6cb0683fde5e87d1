"""section_playlist (only its name), section_song and section_section."""

from __future__ import annotations

from django.db import models


class Playlist(models.Model):
    name = models.CharField(max_length=64)

    class Meta:
        managed = False
        db_table = "section_playlist"


class Song(models.Model):
    artist = models.CharField(max_length=128)
    name = models.CharField(max_length=128)

    class Meta:
        managed = False
        db_table = "section_song"


class Section(models.Model):
    playlist = models.ForeignKey(Playlist, on_delete=models.CASCADE)
    song = models.ForeignKey(Song, on_delete=models.CASCADE, null=True)
    start_time = models.FloatField()
    duration = models.FloatField()
    filename = models.CharField(max_length=255)
    play_count = models.PositiveIntegerField()
    tag = models.CharField(max_length=128)
    group = models.CharField(max_length=128)

    class Meta:
        managed = False
        db_table = "section_section"
