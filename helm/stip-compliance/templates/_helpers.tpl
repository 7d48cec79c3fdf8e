{{/* Names. */}}
{{- define "stip.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stip.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of a component's objects: (dict "root" $ "component" "intake"). */}}
{{- define "stip.componentName" -}}
{{- printf "%s-%s" (include "stip.fullname" .root | trunc 52 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "stip.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Every object's labels: (dict "root" $ "component" "intake"); component may be "". */}}
{{- define "stip.labels" -}}
helm.sh/chart: {{ include "stip.chart" .root }}
{{ include "stip.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: stip-compliance
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The stable subset, for selectors: name, instance and (when given) component. */}}
{{- define "stip.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stip.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "stip.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "stip.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stip.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The services' gRPC ports (fixed by the design: 50051, 50052, 50053). */}}
{{- define "stip.grpcPort" -}}
{{- get (dict "intake" 50051 "assessment" 50052 "registry" 50053) . -}}
{{- end -}}

{{/* Whether a component consumes Kafka partitions (its replicas share them). */}}
{{- define "stip.isConsumer" -}}
{{- $c := index .root.Values .component -}}
{{- if or (ne .component "intake") $c.inbound -}}true{{- end -}}
{{- end -}}

{{/* The kafka:// URL of --events. */}}
{{- define "stip.events" -}}
{{- printf "kafka://%s" .Values.kafka.bootstrapServers -}}
{{- end -}}

{{/* Chart-wide checks, run once from the first template rendered. */}}
{{- define "stip.validate" -}}
{{- $v := .Values -}}
{{- $grace := int $v.terminationGracePeriodSeconds -}}
{{- $needed := add (int $v.shutdownTimeoutSeconds) (int $v.preStopSleepSeconds) -}}
{{- if le $grace (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than shutdownTimeoutSeconds + preStopSleepSeconds (%d): the kubelet would kill a pod still finishing its batch" $grace (int $needed)) -}}
{{- end -}}
{{- if ne (toString $v.kafka.topics.filings.retentionMs) "-1" -}}
{{- fail "kafka.topics.filings.retentionMs must be -1 (keep forever): the assessment rebuilds its supersedes index from stip.filings.v1" -}}
{{- end -}}
{{- range $component := list "intake" "assessment" "registry" -}}
{{- $c := index $v $component -}}
{{- if and $c.enabled $c.autoscaling.enabled -}}
{{- if gt (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) is above maxReplicas (%d)" $component (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if and (include "stip.isConsumer" (dict "root" $ "component" $component)) (gt (int $c.autoscaling.maxReplicas) (int $v.kafka.topics.partitions)) -}}
{{- fail (printf "%s.autoscaling.maxReplicas (%d) is above kafka.topics.partitions (%d): a consumer group never gives a partition to two members, so replicas beyond the partition count would sit idle" $component (int $c.autoscaling.maxReplicas) (int $v.kafka.topics.partitions)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.registry.enabled (not $v.database.existingSecret) (not $v.database.url) -}}
{{- fail "the registry needs its PostgreSQL database: set database.existingSecret (a Secret with the URL and the password) or database.url" -}}
{{- end -}}
{{- if and (has $v.database.sslMode (list "verify-ca" "verify-full")) (not $v.database.sslRootCertSecret) -}}
{{- fail (printf "database.sslMode %s needs database.sslRootCertSecret (the CA libpq verifies the server with)" $v.database.sslMode) -}}
{{- end -}}
{{- if $v.tls.enabled -}}
{{- range $component := list "intake" "assessment" "registry" -}}
{{- if and (index $v $component).enabled (not (index $v $component).tls.existingSecret) -}}
{{- fail (printf "tls.enabled: set %s.tls.existingSecret (a Secret with tls.crt, tls.key and ca.crt)" $component) -}}
{{- end -}}
{{- end -}}
{{- if and $v.intake.enabled $v.registry.tls.requireClientCertificates -}}
{{- fail "registry.tls.requireClientCertificates: stip-intake presents no client certificate to the registry (it has --registry-tls-ca-file only), so it could not reach it; leave it false while intake is enabled" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* --kafka-property arguments from kafka.properties (a YAML list). */}}
{{- define "stip.kafkaPropertyArgs" -}}
{{- $out := list -}}
{{- range $k, $val := .Values.kafka.properties -}}
{{- $out = append $out (printf "--kafka-property=%s=%v" $k $val) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
