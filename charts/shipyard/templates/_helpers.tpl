{{- define "shipyard.labels" -}}
app.kubernetes.io/name: shipyard-controller
{{- end -}}
