"""The pipeline of each camera and the stage they share: ``camera.py`` (one camera's
capture, preprocessing, publish stage, counters and state), ``lanes.py`` (the fair queue
between the cameras and the inference stage), ``inference.py`` (one model on one device,
shared by every camera that uses it) and ``publishing.py`` (a camera's results become
events and state).  ``edged.app`` wires them to the publisher and remote operation."""
