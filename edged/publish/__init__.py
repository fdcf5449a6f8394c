"""Where results go.  The daemon speaks to a :class:`Publisher`; MQTT is the one we ship."""

from edged.publish.base import Publisher
from edged.publish.mqtt import MqttPublisher

__all__ = ["MqttPublisher", "Publisher"]
