{{/*
The workload of one component: a Deployment or a StatefulSet with the hardened pod all three
share. Called from each component's template as
  include "stip.workload" (dict "root" $ "component" "intake" "env" $env "volumes" $vols "mounts" $mounts "args" $args)
where env, volumes and mounts are lists of the component's own entries.
*/}}
{{- define "stip.workload" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $component := .component -}}
{{- $c := index $v $component -}}
{{- $name := include "stip.componentName" (dict "root" $root "component" $component) -}}
{{- $grpcPort := int (include "stip.grpcPort" $component) -}}
apiVersion: apps/v1
kind: {{ $c.workloadKind | default "Deployment" }}
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "stip.labels" (dict "root" $root "component" $component) | nindent 4 }}
spec:
  {{- if not $c.autoscaling.enabled }}
  replicas: {{ $c.replicaCount }}
  {{- end }}
  revisionHistoryLimit: {{ $v.revisionHistoryLimit }}
  selector:
    matchLabels:
      {{- include "stip.selectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
  {{- if eq ($c.workloadKind | default "Deployment") "StatefulSet" }}
  serviceName: {{ $name }}-headless
  # Replicas start and stop together: their ids are stable, not their order.
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
  {{- else }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "stip.labels" (dict "root" $root "component" $component) | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- with .checksum }}
        checksum/policies: {{ . }}
        {{- end }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "stip.serviceAccountName" $root }}
      automountServiceAccountToken: false
      # STIP_* variables Kubernetes would derive from Service names are refused as unknown.
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- with $v.image.pullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ $component }}
          image: {{ include "stip.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          command: [{{ printf "stip-%s" $component | quote }}]
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: grpc
              containerPort: {{ $grpcPort }}
              protocol: TCP
            - name: health
              containerPort: {{ $v.healthPort }}
              protocol: TCP
            - name: metrics
              containerPort: {{ $c.metricsPort }}
              protocol: TCP
          env:
            - name: STIP_EVENTS
              value: {{ include "stip.events" $root | quote }}
            - name: STIP_GRPC_LISTEN
              value: "0.0.0.0:{{ $grpcPort }}"
            - name: STIP_HEALTH_LISTEN
              value: "0.0.0.0:{{ $v.healthPort }}"
            - name: STIP_ADMIN_LISTEN
              value: "0.0.0.0:{{ $c.metricsPort }}"
            - name: STIP_LOG_LEVEL
              value: {{ $c.logLevel | default $v.logLevel | quote }}
            - name: STIP_LOG_FORMAT
              value: {{ $v.logFormat | quote }}
            - name: STIP_SHUTDOWN_TIMEOUT
              value: "{{ $v.shutdownTimeoutSeconds }}s"
            - name: STIP_PARTITIONS
              value: {{ $v.kafka.topics.partitions | quote }}
            - name: STIP_GRPC_MAX_MESSAGE_BYTES
              value: {{ $v.grpc.maxMessageBytes | int64 | quote }}
            - name: STIP_GRPC_MAX_CONCURRENT_STREAMS
              value: {{ $v.grpc.maxConcurrentStreams | int64 | quote }}
            - name: STIP_GRPC_MAX_THREADS
              value: {{ $v.grpc.maxThreads | int64 | quote }}
            {{- if $v.tls.enabled }}
            - name: STIP_TLS_CERT_FILE
              value: /etc/stip/tls/{{ $v.tls.certKey }}
            - name: STIP_TLS_KEY_FILE
              value: /etc/stip/tls/{{ $v.tls.keyKey }}
            {{- if $c.tls.requireClientCertificates }}
            - name: STIP_TLS_CLIENT_CA_FILE
              value: /etc/stip/tls/{{ $v.tls.caKey }}
            {{- end }}
            {{- end }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $c.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if $v.preStopSleepSeconds }}
          lifecycle:
            # Native sleep (Kubernetes 1.30+, no shell in the pod): endpoints are removed
            # before SIGTERM stops the server.
            preStop:
              sleep:
                seconds: {{ $v.preStopSleepSeconds }}
          {{- end }}
          # Probes on the plaintext health port (grpc.health.v1), whatever TLS the API uses.
          startupProbe:
            grpc:
              port: {{ $v.healthPort }}
              service: stip.liveness
            periodSeconds: {{ $v.probes.startup.periodSeconds }}
            failureThreshold: {{ $v.probes.startup.failureThreshold }}
            timeoutSeconds: {{ $v.probes.timeoutSeconds }}
          livenessProbe:
            grpc:
              port: {{ $v.healthPort }}
              service: stip.liveness
            periodSeconds: {{ $v.probes.liveness.periodSeconds }}
            failureThreshold: {{ $v.probes.liveness.failureThreshold }}
            timeoutSeconds: {{ $v.probes.timeoutSeconds }}
          readinessProbe:
            grpc:
              port: {{ $v.healthPort }}
              service: ""
            periodSeconds: {{ $v.probes.readiness.periodSeconds }}
            failureThreshold: {{ $v.probes.readiness.failureThreshold }}
            successThreshold: 1
            timeoutSeconds: {{ $v.probes.timeoutSeconds }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $v.tls.enabled }}
            - name: tls
              mountPath: /etc/stip/tls
              readOnly: true
            {{- end }}
            {{- with .mounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmpSizeLimit }}
        {{- if $v.tls.enabled }}
        - name: tls
          secret:
            secretName: {{ $c.tls.existingSecret }}
            defaultMode: 0440
        {{- end }}
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $c.affinity }}
      affinity:
        {{- toYaml $c.affinity | nindent 8 }}
      {{- end }}
      {{- if $c.topologySpread }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "stip.selectorLabels" (dict "root" $root "component" $component) | nindent 14 }}
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "stip.selectorLabels" (dict "root" $root "component" $component) | nindent 14 }}
      {{- end }}
{{- end -}}

{{/* The Service (and for a StatefulSet its headless governing Service) of a component. */}}
{{- define "stip.service" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $c := index $root.Values $component -}}
{{- $name := include "stip.componentName" (dict "root" $root "component" $component) -}}
{{- $kinds := list "" -}}
{{- if eq ($c.workloadKind | default "Deployment") "StatefulSet" }}{{ $kinds = append $kinds "headless" }}{{ end -}}
{{- range $kind := $kinds }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}{{ if $kind }}-headless{{ end }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "stip.labels" (dict "root" $root "component" $component) | nindent 4 }}
    {{- if $kind }}
    stip-compliance/service: headless
    {{- end }}
  {{- with $c.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if $kind }}
  clusterIP: None
  publishNotReadyAddresses: true
  {{- else }}
  type: {{ $c.service.type }}
  {{- end }}
  selector:
    {{- include "stip.selectorLabels" (dict "root" $root "component" $component) | nindent 4 }}
  ports:
    - name: grpc
      port: {{ include "stip.grpcPort" $component }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    - name: health
      port: {{ $root.Values.healthPort }}
      targetPort: health
      protocol: TCP
      appProtocol: grpc
    - name: metrics
      port: {{ $c.metricsPort }}
      targetPort: metrics
      protocol: TCP
      appProtocol: http
{{- end }}
{{- end -}}

{{/* HPA and PDB of a component. */}}
{{- define "stip.scaling" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $c := index $root.Values $component -}}
{{- $name := include "stip.componentName" (dict "root" $root "component" $component) -}}
{{- if $c.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "stip.labels" (dict "root" $root "component" $component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ $c.workloadKind | default "Deployment" }}
    name: {{ $name }}
  minReplicas: {{ $c.autoscaling.minReplicas }}
  maxReplicas: {{ $c.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $c.autoscaling.targetCPUUtilizationPercentage }}
  {{- with $c.autoscaling.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- if $c.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "stip.labels" (dict "root" $root "component" $component) | nindent 4 }}
spec:
  {{- if $c.podDisruptionBudget.minAvailable }}
  minAvailable: {{ $c.podDisruptionBudget.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $c.podDisruptionBudget.maxUnavailable }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "stip.selectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
{{- end }}
{{- end -}}
