"""The ``mqtt:`` section: the MQTT bus (one broker per daemon; docs/bus.md). The same keys make a
sink of ``kind: mqtt`` (:mod:`livetok.config.sinks`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from livetok.config.base import NAME, Strict


class MqttQos(Strict):
    tokens: Literal[0, 1, 2] = Field(1, description="QoS of per-modality token messages")
    steps: Literal[0, 1, 2] = Field(1, description="QoS of aligned-step messages")
    meta: Literal[0, 1, 2] = Field(1, description="QoS of the retained meta and availability messages")
    stats: Literal[0, 1, 2] = Field(0, description="QoS of the stats messages")


class MqttTls(Strict):
    enabled: bool = Field(False, description="TLS to the broker (mqtts://); the broker's certificate and name are "
                          "always verified: there is no insecure switch")
    ca_file: Path | None = Field(None, description="PEM CA bundle to trust; null = the system's CAs")
    cert_file: Path | None = Field(None, description="client certificate (PEM), for brokers that require one")
    key_file: Path | None = Field(None, description="the client certificate's key (PEM)")
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="lowest TLS version accepted")


class Mqtt(Strict):
    """The MQTT bus: every token packet, step, meta and stats message published to one broker."""

    host: str | None = Field(None, min_length=1, max_length=253,
                             description="broker host name or address; null = no MQTT (or --sink mqtt://HOST)")
    port: int | None = Field(None, ge=1, le=65535, description="broker port; null = 1883, or 8883 with TLS")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT version; 3.1.1 has no properties or reason codes")
    client_id: str | None = Field(None, min_length=1, max_length=128,
                                  description="MQTT client id; null = livetok-INSTANCE (livetok-HOSTNAME by default)")
    prefix: str = Field("livetok", pattern=r"^[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64}){0,7}$",
                        description="first topic levels: {prefix}/{instance}/...")
    instance: str | None = Field(None, pattern=NAME, description="this daemon's topic level; null = the host name")
    keepalive_s: int = Field(15, ge=2, le=3600, description="MQTT keepalive (s): how soon a dead connection is noticed")
    qos: MqttQos = Field(MqttQos(), description="QoS per message class")
    message_expiry_s: int | None = Field(
        60, ge=1, le=86_400 * 365,
        description="v5 message expiry of token and step messages (s): a consumer back after an hour does not get "
        "an hour of stale tokens; null = never")
    username: str | None = Field(None, min_length=1, max_length=256, description="user name to log in with")
    password_file: Path | None = Field(
        None, description="file holding the password (never in the config itself, argv or the environment)")
    password_credential: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="name of a systemd credential holding the password ($CREDENTIALS_DIRECTORY/NAME, LoadCredential=)")
    tls: MqttTls = Field(MqttTls(), description="TLS")
    buffer_s: float = Field(60.0, gt=0, le=86_400,
                            description="outbound buffer sized for this long of the configured streams (s): tokens "
                            "are carried through a broker outage this long; oldest dropped (counted) beyond")
    buffer_messages: int | None = Field(None, ge=16, le=10_000_000,
                                        description="outbound buffer bound (messages); null = from buffer_s")
    buffer_mb: float | None = Field(None, gt=0, le=65_536,
                                    description="outbound buffer bound (MB); null = from buffer_s")
    max_packet_bytes: int | None = Field(
        None, ge=256, le=268_435_455,
        description="refuse (count, never send) messages whose MQTT packet exceeds this (bytes); the broker's own "
        "limit from its v5 CONNACK applies too. Set it to Mosquitto's message_size_limit, which is not advertised")
    stats_interval_s: float = Field(5.0, ge=0.5, le=3600, description="publish the stats JSON this often (s)")
    connect_timeout_s: float = Field(10.0, gt=0, le=120, description="give up one connection attempt after this (s)")

    @field_validator("host")
    @classmethod
    def _host(cls, host: str | None) -> str | None:
        # Checked here, not at the first connection: "mqtt://broker" or "broker:1883" would pass as a
        # string and then fail to resolve forever in a running service.
        if host is not None and not re.fullmatch(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*", host):
            raise ValueError(f"{host!r} is not a host name or address (no scheme, port or path: the port is "
                             "mqtt.port, TLS is mqtt.tls.enabled)")
        return host

    @model_validator(mode="after")
    def _secrets(self) -> Mqtt:
        if self.password_file is not None and self.password_credential is not None:
            raise ValueError("give password_file or password_credential, not both")
        if (self.password_file is not None or self.password_credential is not None) and self.username is None:
            raise ValueError("a password needs a username")
        if self.tls.cert_file is None and self.tls.key_file is not None:
            raise ValueError("tls.key_file needs tls.cert_file")
        return self
