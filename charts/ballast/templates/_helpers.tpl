{{/* The chart's name, or nameOverride. */}}
{{- define "ballast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects: fullnameOverride, else the release name (with the chart name when the
release name does not contain it). Short enough for the suffixes the templates add. */}}
{{- define "ballast.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "ballast.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ballast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ballast
{{- end }}

{{/* Labels that select the operator's pods (never change them: a Deployment's selector is immutable). */}}
{{- define "ballast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ballast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "ballast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ballast.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's image: pinned by digest when one is given, else by tag (default: appVersion). */}}
{{- define "ballast.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The documents of a multi-document YAML file of the chart (files/...), each parsed. */}}
{{- define "ballast.documents" -}}
{{- $documents := list }}
{{- range $text := regexSplit "(?m)^---\\s*$" (.root.Files.Get .path) -1 }}
{{- $document := fromYaml $text }}
{{- if $document.kind }}
{{- $documents = append $documents $document }}
{{- end }}
{{- end }}
{{- toJson $documents }}
{{- end }}

{{/* The `job` label Prometheus gives the operator's metrics: a ServiceMonitor names the job after the Service. */}}
{{- define "ballast.metricsJob" -}}
{{ include "ballast.fullname" . }}-metrics
{{- end }}

{{/* A per-deployment alert's expression with its owner: the `owner` of ballast_modeldeployment_info (the
deployment's ballast.dev/owner label), else defaultOwner. A deployment without an info series still alerts. */}}
{{- define "ballast.owned" -}}
{{- $info := printf "max by (namespace, name, owner) (ballast_modeldeployment_info{job=\"%s\"})" (include "ballast.metricsJob" .root) -}}
label_replace(
  ({{ .expr }}) * on (namespace, name) group_left (owner) {{ $info }}
  or on (namespace, name)
  ({{ .expr }}),
  "owner", {{ .root.Values.metrics.prometheusRule.defaultOwner | quote }}, "owner", ""
)
{{- end }}
