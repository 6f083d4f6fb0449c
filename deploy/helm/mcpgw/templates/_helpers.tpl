{{/*
Helpers. Go template builtins only (no Sprig), so the chart renders the same under Helm and under the
test renderer (test/helpers/helm-render.ts). Each label helper writes complete lines at a fixed indent.
*/}}
{{- define "mcpgw.name" -}}{{ or .Values.nameOverride .Chart.Name }}{{- end -}}

{{- define "mcpgw.fullname" -}}
{{- if .Values.fullnameOverride -}}{{ .Values.fullnameOverride }}
{{- else if eq .Release.Name (or .Values.nameOverride .Chart.Name) -}}{{ .Release.Name }}
{{- else -}}{{ .Release.Name }}-{{ template "mcpgw.name" . }}{{- end -}}
{{- end -}}

{{- define "mcpgw.image" -}}
{{ .Values.image.repository }}:{{ or .Values.image.tag .Chart.AppVersion }}
{{- end -}}

{{- define "mcpgw.secretName" -}}
{{- if .Values.secrets.existingSecret -}}{{ .Values.secrets.existingSecret }}{{- else -}}{{ template "mcpgw.fullname" . }}{{- end -}}
{{- end -}}

{{/* Common labels, at 4 spaces (metadata.labels of a top-level object). */}}
{{- define "mcpgw.labels" }}
    app.kubernetes.io/name: {{ template "mcpgw.name" . }}
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/version: {{ printf "%q" .Chart.AppVersion }}
    app.kubernetes.io/managed-by: {{ .Release.Service }}
    app.kubernetes.io/part-of: mcpgw
    helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
    mcpgw.io/region: {{ .Values.region }}
{{- end -}}

{{/* Selector labels of the edge pods, at 6 spaces (spec.selector.matchLabels, podSelector.matchLabels). */}}
{{- define "mcpgw.edgeSelector" }}
      app.kubernetes.io/name: {{ template "mcpgw.name" . }}
      app.kubernetes.io/instance: {{ .Release.Name }}
      app.kubernetes.io/component: edge
{{- end -}}

{{- define "mcpgw.coreSelector" }}
      app.kubernetes.io/name: {{ template "mcpgw.name" . }}
      app.kubernetes.io/instance: {{ .Release.Name }}
      app.kubernetes.io/component: core
{{- end -}}

{{/* The same selectors at 4 spaces (Service spec.selector). */}}
{{- define "mcpgw.edgeSelector4" }}
    app.kubernetes.io/name: {{ template "mcpgw.name" . }}
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/component: edge
{{- end -}}

{{- define "mcpgw.coreSelector4" }}
    app.kubernetes.io/name: {{ template "mcpgw.name" . }}
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/component: core
{{- end -}}

{{/* Selector labels at 8 spaces (a pod template's metadata.labels). */}}
{{- define "mcpgw.edgeSelector8" }}
        app.kubernetes.io/name: {{ template "mcpgw.name" . }}
        app.kubernetes.io/instance: {{ .Release.Name }}
        app.kubernetes.io/component: edge
{{- end -}}

{{- define "mcpgw.coreSelector8" }}
        app.kubernetes.io/name: {{ template "mcpgw.name" . }}
        app.kubernetes.io/instance: {{ .Release.Name }}
        app.kubernetes.io/component: core
{{- end -}}

{{/* Selector labels at 14 spaces (a NetworkPolicy peer's podSelector.matchLabels). */}}
{{- define "mcpgw.edgeSelector14" }}
              app.kubernetes.io/name: {{ template "mcpgw.name" . }}
              app.kubernetes.io/instance: {{ .Release.Name }}
              app.kubernetes.io/component: edge
{{- end -}}

{{- define "mcpgw.coreSelector14" }}
              app.kubernetes.io/name: {{ template "mcpgw.name" . }}
              app.kubernetes.io/instance: {{ .Release.Name }}
              app.kubernetes.io/component: core
{{- end -}}

{{/* Environment from the Secret (at 12 spaces: a container's env list); the config files say ${REDIS_URL} etc. */}}
{{- define "mcpgw.secretEnv" }}
            - name: REDIS_URL
              valueFrom:
                secretKeyRef: { name: {{ template "mcpgw.secretName" . }}, key: redis-url }
            - name: STORE_URL
              valueFrom:
                secretKeyRef: { name: {{ template "mcpgw.secretName" . }}, key: store-url }
{{- if .Values.metrics.bearerToken }}
            - name: METRICS_TOKEN
              valueFrom:
                secretKeyRef: { name: {{ template "mcpgw.secretName" . }}, key: metrics-token }
{{- end }}
{{- end -}}
