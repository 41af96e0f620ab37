{{/* Names and labels shared by every template. */}}

{{- define "kubetasks.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetasks.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects carry the release namespace: two releases never collide. */}}
{{- define "kubetasks.clusterName" -}}
{{- printf "%s-%s-%s" (include "kubetasks.fullname" .root) .root.Release.Namespace .suffix | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetasks.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetasks.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kubetasks.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubetasks.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: kubetasks
{{- end }}

{{- define "kubetasks.operatorName" -}}
{{- printf "%s-operator" (include "kubetasks.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubetasks.operatorServiceAccount" -}}
{{- default (include "kubetasks.operatorName" .) .Values.operator.serviceAccount.name }}
{{- end }}

{{- define "kubetasks.taskServiceAccount" -}}
{{- default (printf "%s-task" (include "kubetasks.fullname" .) | trunc 63 | trimSuffix "-") .Values.tasks.serviceAccount.name }}
{{- end }}

{{- define "kubetasks.redisName" -}}
{{- printf "%s-redis" (include "kubetasks.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Where task pods run: the watched namespaces, else tasks.namespaces, else the release's. */}}
{{- define "kubetasks.taskNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toJson .Values.watchNamespaces }}
{{- else if .Values.tasks.namespaces }}
{{- toJson .Values.tasks.namespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{- define "kubetasks.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The container security settings every container of the chart gets. */}}
{{- define "kubetasks.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* The object storage settings (s3.*) as container env, credentials by Secret reference:
the operator's and the dashboard's. */}}
{{- define "kubetasks.s3Env" -}}
{{- with .Values.s3 }}
{{- if .endpoint }}
- name: KUBETASKS_S3_ENDPOINT
  value: {{ .endpoint | quote }}
{{- end }}
{{- if .bucket }}
- name: KUBETASKS_S3_BUCKET
  value: {{ .bucket | quote }}
{{- end }}
{{- if .region }}
- name: KUBETASKS_S3_REGION
  value: {{ .region | quote }}
{{- end }}
- name: KUBETASKS_PRESIGN_EXPIRY
  value: {{ .presignExpirySeconds | quote }}
{{- if .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end }}
{{- end }}

{{- define "kubetasks.dashboardName" -}}
{{- printf "%s-dashboard" (include "kubetasks.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* What the dashboard shows: dashboard.namespaces, else where tasks run. */}}
{{- define "kubetasks.dashboardNamespaces" -}}
{{- .Values.dashboard.namespaces | default (include "kubetasks.taskNamespaces" . | fromJsonArray) | toJson }}
{{- end }}
