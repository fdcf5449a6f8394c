"""Learn in the field: collected frames become labelled training photos, a training job
runs beside the daemon at low priority, and its model is compared with the running one on
the same held-out photos before it is deployed through the ``reload`` path."""
