{{/* Names and labels. */}}
{{- define "esm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "esm.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "esm.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "esm.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "esm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "esm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "esm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "esm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "esm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "esm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "esm.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The grace period: given, else the drain timeout + 20 s. */}}
{{- define "esm.grace" -}}
{{- if .Values.terminationGracePeriodSeconds -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add (int .Values.drainTimeoutSeconds) 20 -}}
{{- end -}}
{{- end -}}

{{/* Whether any mapping reads Kinesis or DynamoDB Streams (shard leases). */}}
{{- define "esm.hasShards" -}}
{{- $found := false -}}
{{- range .Values.config.eventSourceMappings -}}
{{- $arn := default "" .EventSourceArn -}}
{{- if or (contains ":kinesis:" $arn) (contains ":dynamodb:" $arn) -}}
{{- $found = true -}}
{{- end -}}
{{- end -}}
{{- $found -}}
{{- end -}}

{{/* Checks across values that a schema cannot express. */}}
{{- define "esm.validate" -}}
{{- $shards := eq (include "esm.hasShards" .) "true" -}}
{{- if and $shards (eq .Values.leases.store "sqlite") -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- fail "replicaCount > 1 with Kinesis or DynamoDB Streams mappings needs leases.store: dynamodb (each replica would have its own SQLite lease store and read every shard)" -}}
{{- end -}}
{{- if and .Values.autoscaling.hpa.enabled (gt (int .Values.autoscaling.hpa.maxReplicas) 1) -}}
{{- fail "autoscaling.hpa with Kinesis or DynamoDB Streams mappings needs leases.store: dynamodb" -}}
{{- end -}}
{{- if and .Values.autoscaling.keda.enabled (gt (int .Values.autoscaling.keda.maxReplicas) 1) -}}
{{- fail "autoscaling.keda with Kinesis or DynamoDB Streams mappings needs leases.store: dynamodb" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.api.enabled (not .Values.api.credentialsSecret) -}}
{{- fail "api.enabled needs api.credentialsSecret: a Secret with the access keys callers sign with" -}}
{{- end -}}
{{- if and .Values.api.enabled (eq .Values.leases.store "sqlite") -}}
{{- if or (gt (int .Values.replicaCount) 1) (and .Values.autoscaling.hpa.enabled (gt (int .Values.autoscaling.hpa.maxReplicas) 1)) (and .Values.autoscaling.keda.enabled (gt (int .Values.autoscaling.keda.maxReplicas) 1)) -}}
{{- fail "api.enabled with several replicas needs leases.store: dynamodb (each replica would keep its own SQLite mapping store)" -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := .Values.settings -}}
{{- if has $name (list "HTTP_HOST" "HTTP_PORT" "DRAIN_TIMEOUT_SECONDS" "WORKERS" "LOG_FORMAT" "POD_NAME" "LEASE_STORE" "LEASE_TABLE" "LEASE_FAILOVER_SECONDS" "DATA_DIR" "AWS_ENDPOINT_URL" "ACCOUNT_ID" "API_HOST" "API_PORT" "API_CREDENTIALS" "API_CREDENTIALS_FILE" "MAPPING_TABLE") -}}
{{- fail (printf "settings.%s: set by the chart; use its own value instead (see the chart README)" $name) -}}
{{- end -}}
{{- end -}}
{{- $hpaMany := and .Values.autoscaling.hpa.enabled (gt (int .Values.autoscaling.hpa.maxReplicas) 1) -}}
{{- $kedaMany := and .Values.autoscaling.keda.enabled (gt (int .Values.autoscaling.keda.maxReplicas) 1) -}}
{{- if and .Values.leases.persistence.enabled (or (gt (int .Values.replicaCount) 1) $hpaMany $kedaMany) -}}
{{- fail "leases.persistence (a ReadWriteOnce volume) is for one pod: turn it off, or use leases.store: dynamodb" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled -}}
{{- fail "metrics: enable serviceMonitor or podMonitor, not both (every series would be scraped twice)" -}}
{{- end -}}
{{- if and .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled -}}
{{- fail "autoscaling: enable hpa or keda, not both" -}}
{{- end -}}
{{- if and .Values.terminationGracePeriodSeconds (le (int .Values.terminationGracePeriodSeconds) (add (int .Values.drainTimeoutSeconds) 10)) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed drainTimeoutSeconds + 10 (%v): the drain would be killed" .Values.terminationGracePeriodSeconds (add (int .Values.drainTimeoutSeconds) 10)) -}}
{{- end -}}
{{- end -}}
