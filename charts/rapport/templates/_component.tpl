{{/*
The objects of one component. Every define takes a component context:
  root   the chart's root context ($)
  name   the component's key
  c      its merged values (see rapport.model)
  model  name -> merged values of every enabled component (for edges)
*/}}

{{/* ---- environment ------------------------------------------------------- */}}

{{- define "rapport.secretRef" -}}
valueFrom:
  secretKeyRef:
    name: {{ .name }}
    key: {{ .key }}
{{- end -}}

{{- define "rapport.env" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $v := $root.Values -}}
- name: HOME
  value: /tmp
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- with $c.settingsPrefix }}
- name: {{ . }}_HOST
  value: 0.0.0.0
- name: {{ . }}_PORT
  value: {{ $c.ports.http | int | quote }}
- name: {{ . }}_LOG_LEVEL
  value: {{ $c.logLevel | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ $c.otelServiceName | default (printf "rapport-%s" .name) | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ list "k8s.namespace.name=$(POD_NAMESPACE)" "k8s.pod.name=$(POD_NAME)" "service.instance.id=$(POD_NAME)" $v.otel.resourceAttributes | compact | join "," | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $v.otel.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $v.otel.samplerArg | quote }}
{{- if $v.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
{{- if has "kafka" $c.uses }}
- name: RAPPORT_KAFKA_BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: RAPPORT_KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- with $v.kafka.sasl.mechanism }}
- name: RAPPORT_KAFKA_SASL_MECHANISM
  value: {{ . | quote }}
- name: RAPPORT_KAFKA_SASL_USERNAME
  value: {{ $v.kafka.sasl.username | quote }}
- name: RAPPORT_KAFKA_SASL_PASSWORD
  {{- include "rapport.secretRef" (dict "name" (required "kafka.sasl.existingSecret is required when kafka.sasl.mechanism is set" $v.kafka.sasl.existingSecret) "key" $v.kafka.sasl.passwordKey) | nindent 2 }}
{{- end }}
{{- end }}
{{- if has "mongo" $c.uses }}
- name: RAPPORT_MONGO_URL
  {{- include "rapport.secretRef" (dict "name" ($v.mongo.existingSecret | default (include "rapport.secretName" $root)) "key" (ternary $v.mongo.urlKey "mongo-url" (ne $v.mongo.existingSecret ""))) | nindent 2 }}
- name: RAPPORT_MONGO_DATABASE
  value: {{ $v.mongo.database | quote }}
- name: RAPPORT_MONGO_TIMEOUT_MS
  value: {{ $v.mongo.timeoutMs | int | quote }}
{{- end }}
{{- if has "redis" $c.uses }}
- name: RAPPORT_REDIS_URL
  {{- include "rapport.secretRef" (dict "name" ($v.redis.existingSecret | default (include "rapport.secretName" $root)) "key" (ternary $v.redis.urlKey "redis-url" (ne $v.redis.existingSecret ""))) | nindent 2 }}
- name: RAPPORT_REDIS_TIMEOUT_MS
  value: {{ $v.redis.timeoutMs | int | quote }}
{{- end }}
{{- if has "milvus" $c.uses }}
{{- $prefix := required (printf "components.%s.settingsPrefix is required when it uses milvus" .name) $c.settingsPrefix }}
- name: {{ $prefix }}_MILVUS_URI
  value: {{ required "milvus.uri is required" $v.milvus.uri | quote }}
- name: {{ $prefix }}_MILVUS_DATABASE
  value: {{ $v.milvus.database | quote }}
- name: {{ $prefix }}_SEARCH_CONSISTENCY
  value: {{ $v.milvus.searchConsistency | quote }}
{{- with $v.milvus.existingSecret }}
- name: {{ $prefix }}_MILVUS_TOKEN
  {{- include "rapport.secretRef" (dict "name" . "key" $v.milvus.tokenKey) | nindent 2 }}
{{- end }}
{{- end }}
{{- with $c.memory }}
{{- $prefix := required (printf "components.%s.settingsPrefix is required when it has memory" $.name) $c.settingsPrefix }}
- name: {{ $prefix }}_MEMORY
  value: {{ .enabled | quote }}
{{- if .enabled }}
- name: {{ $prefix }}_MEMORY_MAX_FACTS
  value: {{ .maxFacts | int | quote }}
- name: {{ $prefix }}_MEMORY_RETENTION_DAYS
  value: {{ .retentionDays | quote }}
{{- if has "milvus" $c.uses }}
- name: {{ $prefix }}_MEMORY_COLLECTION
  value: {{ .collection | quote }}
- name: {{ $prefix }}_MEMORY_MAX_MESSAGES
  value: {{ .maxMessages | int | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if has "apiKeys" $c.uses }}
- name: RAPPORT_API_KEYS_FILE
  value: /etc/rapport/api-keys/{{ ternary $v.apiKeys.key "api-keys.json" (ne $v.apiKeys.existingSecret "") }}
{{- end }}
{{- if include "rapport.hasExperiments" . }}
- name: {{ required (printf "components.%s.settingsPrefix is required when it uses experiments" .name) $c.settingsPrefix }}_EXPERIMENTS_FILE
  value: /etc/rapport/experiments/experiments.yaml
{{- end }}
{{- range $target := $c.calls }}
{{- $callee := index $.model $target }}
{{- if not $callee }}
{{- fail (printf "components.%s.calls names %q, which is not an enabled component" $.name $target) }}
{{- end }}
{{- $ctx := dict "Host" (include "rapport.componentName" (list $root $target)) "Ports" $callee.ports "Template" $root.Template }}
{{- range $envName, $envValue := $callee.clientEnv }}
- name: {{ $envName }}
  value: {{ tpl (toString $envValue) $ctx | quote }}
{{- end }}
{{- end }}
{{- range $envName, $envValue := $c.env }}
- name: {{ $envName }}
  value: {{ tpl (toString $envValue) (dict "Values" $v "Release" $root.Release "Chart" $root.Chart "Template" $root.Template "Component" $c) | quote }}
{{- end }}
{{- with $c.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* ---- pod ---------------------------------------------------------------- */}}

{{- define "rapport.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .c.runAsUser | int }}
runAsGroup: {{ .c.runAsUser | int }}
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "rapport.probe" -}}
httpGet:
  path: {{ .probe.path }}
  port: {{ .probe.port }}
periodSeconds: {{ .probe.periodSeconds | int }}
timeoutSeconds: {{ .probe.timeoutSeconds | int }}
failureThreshold: {{ .probe.failureThreshold | int }}
{{- end -}}

{{- define "rapport.deployment" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $fullName := include "rapport.componentName" (list $root .name) -}}
{{- $selector := include "rapport.selectorLabels" (list $root .name) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullName }}
  labels:
    {{- include "rapport.componentLabels" . | nindent 4 }}
spec:
  {{- if not (or $c.autoscaling.enabled $c.keda.enabled) }}
  replicas: {{ $c.replicas | int }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 25%
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "rapport.componentLabels" . | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/connections: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- if include "rapport.hasExperiments" . }}
        {{- /* The services read the file at start: a new list needs new pods. */}}
        checksum/experiments: {{ include (print $root.Template.BasePath "/experiments.yaml") $root | sha256sum }}
        {{- end }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ $fullName }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds | int }}
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ $c.runAsUser | int }}
        runAsGroup: {{ $c.runAsUser | int }}
        fsGroup: {{ $c.runAsUser | int }}
        seccompProfile:
          type: RuntimeDefault
      {{- if and $c.modelRepository.enabled (eq $c.modelRepository.source "image") }}
      initContainers:
        - name: model-repository
          image: {{ include "rapport.image" (dict "root" $root "image" $c.modelRepository.image) }}
          imagePullPolicy: {{ $c.image.pullPolicy | default $root.Values.image.pullPolicy }}
          command: [cp, -R, {{ printf "%s/." (trimSuffix "/" $c.modelRepository.imagePath) | quote }}, /model-repository/]
          securityContext:
            {{- include "rapport.containerSecurityContext" . | nindent 12 }}
          resources:
            requests:
              cpu: 100m
              memory: 64Mi
            limits:
              cpu: "1"
              memory: 256Mi
          volumeMounts:
            - name: model-repository
              mountPath: /model-repository
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "rapport.image" (dict "root" $root "image" $c.image) }}
          imagePullPolicy: {{ $c.image.pullPolicy | default $root.Values.image.pullPolicy }}
          {{- with $c.command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $c.args }}
          args:
            {{- range . }}
            - {{ tpl (toString .) (dict "Values" $root.Values "Release" $root.Release "Chart" $root.Chart "Template" $root.Template "Component" $c) | quote }}
            {{- end }}
          {{- end }}
          ports:
            {{- range $portName, $port := $c.ports }}
            - name: {{ $portName }}
              containerPort: {{ $port | int }}
              protocol: TCP
            {{- end }}
          env:
            {{- include "rapport.env" . | nindent 12 }}
          {{- with $c.envFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- if $c.probes.startup.enabled }}
          startupProbe:
            {{- include "rapport.probe" (dict "probe" $c.probes.startup) | nindent 12 }}
          {{- end }}
          livenessProbe:
            {{- include "rapport.probe" (dict "probe" $c.probes.liveness) | nindent 12 }}
          readinessProbe:
            {{- include "rapport.probe" (dict "probe" $c.probes.readiness) | nindent 12 }}
          {{- if $c.preStopSleepSeconds }}
          lifecycle:
            preStop:
              exec:
                command: [sleep, {{ $c.preStopSleepSeconds | int | quote }}]
          {{- end }}
          {{- $resources := deepCopy $c.resources }}
          {{- if $c.gpus }}
          {{- $limits := $resources.limits | default dict }}
          {{- $_ := set $limits "nvidia.com/gpu" ($c.gpus | int) }}
          {{- $_ := set $resources "limits" $limits }}
          {{- end }}
          resources:
            {{- toYaml $resources | nindent 12 }}
          securityContext:
            {{- include "rapport.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- range $path := keys $c.emptyDirs | sortAlpha }}
            - name: {{ include "rapport.volumeName" $path }}
              mountPath: {{ $path }}
            {{- end }}
            {{- if $c.modelRepository.enabled }}
            - name: model-repository
              mountPath: {{ $c.modelRepository.mountPath }}
              readOnly: true
              {{- if and (eq $c.modelRepository.source "pvc") $c.modelRepository.pvc.subPath }}
              subPath: {{ $c.modelRepository.pvc.subPath }}
              {{- end }}
            {{- end }}
            {{- if has "apiKeys" $c.uses }}
            - name: api-keys
              mountPath: /etc/rapport/api-keys
              readOnly: true
            {{- end }}
            {{- if include "rapport.hasExperiments" . }}
            - name: experiments
              mountPath: /etc/rapport/experiments
              readOnly: true
            {{- end }}
            {{- with $c.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- range $path := keys $c.emptyDirs | sortAlpha }}
        {{- $dir := index $c.emptyDirs $path }}
        - name: {{ include "rapport.volumeName" $path }}
          emptyDir:
            {{- with $dir.medium }}
            medium: {{ . }}
            {{- end }}
            {{- with $dir.sizeLimit }}
            sizeLimit: {{ . }}
            {{- end }}
        {{- end }}
        {{- if $c.modelRepository.enabled }}
        - name: model-repository
          {{- if eq $c.modelRepository.source "pvc" }}
          persistentVolumeClaim:
            claimName: {{ required (printf "components.%s.modelRepository.pvc.claimName is required when source is pvc" .name) $c.modelRepository.pvc.claimName }}
            readOnly: true
          {{- else }}
          emptyDir:
            sizeLimit: {{ $c.modelRepository.sizeLimit }}
          {{- end }}
        {{- end }}
        {{- if has "apiKeys" $c.uses }}
        - name: api-keys
          secret:
            secretName: {{ $root.Values.apiKeys.existingSecret | default (include "rapport.secretName" $root) }}
            defaultMode: 0440
            items:
              - key: {{ ternary $root.Values.apiKeys.key "api-keys.json" (ne $root.Values.apiKeys.existingSecret "") }}
                path: {{ ternary $root.Values.apiKeys.key "api-keys.json" (ne $root.Values.apiKeys.existingSecret "") }}
        {{- end }}
        {{- if include "rapport.hasExperiments" . }}
        - name: experiments
          configMap:
            name: {{ include "rapport.experimentsName" $root }}
            defaultMode: 0444
        {{- end }}
        {{- with $c.extraVolumes }}
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
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $c.topologySpread }}
      topologySpreadConstraints:
        {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
        - maxSkew: 1
          topologyKey: {{ $key }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
          matchLabelKeys: [pod-template-hash]
        {{- end }}
      {{- end }}
{{- end -}}

{{/* ---- service, identity, scaling, disruption ----------------------------- */}}

{{- define "rapport.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "rapport.componentName" (list .root .name) }}
  labels:
    {{- include "rapport.componentLabels" . | nindent 4 }}
  {{- with .c.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .c.service.type }}
  selector:
    {{- include "rapport.selectorLabels" (list .root .name) | nindent 4 }}
  ports:
    {{- range $portName, $port := .c.ports }}
    - name: {{ $portName }}
      port: {{ $port | int }}
      targetPort: {{ $portName }}
      protocol: TCP
      {{- if eq $portName "grpc" }}
      appProtocol: grpc
      {{- else }}
      appProtocol: http
      {{- end }}
    {{- end }}
{{- end -}}

{{- define "rapport.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "rapport.componentName" (list .root .name) }}
  labels:
    {{- include "rapport.componentLabels" . | nindent 4 }}
  {{- with .c.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}

{{- define "rapport.hpa" -}}
{{- $a := .c.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "rapport.componentName" (list .root .name) }}
  labels:
    {{- include "rapport.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "rapport.componentName" (list .root .name) }}
  minReplicas: {{ $a.minReplicas | int }}
  maxReplicas: {{ $a.maxReplicas | int }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage | int }}
    {{- with $a.metrics }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "rapport.scaledObject" -}}
{{- $k := .c.keda -}}
{{- $v := .root.Values -}}
{{- if and (ne $v.kafka.securityProtocol "PLAINTEXT") (not $k.authenticationRef) -}}
{{- fail (printf "components.%s.keda.authenticationRef must name a KEDA TriggerAuthentication when kafka.securityProtocol is %s" .name $v.kafka.securityProtocol) -}}
{{- end -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "rapport.componentName" (list .root .name) }}
  labels:
    {{- include "rapport.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    name: {{ include "rapport.componentName" (list .root .name) }}
  minReplicaCount: {{ $k.minReplicas | int }}
  maxReplicaCount: {{ $k.maxReplicas | int }}
  pollingInterval: {{ $k.pollingInterval | int }}
  cooldownPeriod: {{ $k.cooldownPeriod | int }}
  {{- with .c.autoscaling.behavior }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        {{- toYaml . | nindent 8 }}
  {{- end }}
  triggers:
    - type: kafka
      metadata:
        bootstrapServers: {{ $v.kafka.bootstrapServers | quote }}
        consumerGroup: {{ required (printf "components.%s.keda.consumerGroup is required" .name) $k.consumerGroup | quote }}
        topic: {{ $k.topic | quote }}
        lagThreshold: {{ $k.lagThreshold | int | quote }}
        activationLagThreshold: {{ $k.activationLagThreshold | int | quote }}
        offsetResetPolicy: earliest
      {{- with $k.authenticationRef }}
      authenticationRef:
        name: {{ . }}
      {{- end }}
{{- end -}}

{{- define "rapport.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "rapport.componentName" (list .root .name) }}
  labels:
    {{- include "rapport.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .c.pdb.maxUnavailable }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "rapport.selectorLabels" (list .root .name) | nindent 6 }}
{{- end -}}

{{/* ---- network ------------------------------------------------------------ */}}

{{- define "rapport.portList" -}}
{{- range $port := .ports }}
- port: {{ $port | int }}
  protocol: {{ $.protocol | default "TCP" }}
{{- end }}
{{- end -}}

{{- define "rapport.networkPolicy" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $v := $root.Values -}}
{{- $np := $v.networkPolicy -}}
{{- $callers := list -}}
{{- range $other, $oc := .model -}}
{{- if has $.name $oc.calls -}}
{{- $callers = append $callers $other -}}
{{- end -}}
{{- end -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "rapport.componentName" (list $root .name) }}
  labels:
    {{- include "rapport.componentLabels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "rapport.selectorLabels" (list $root .name) | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- if $callers }}
    # Components that call this one.
    - from:
        {{- range $caller := $callers }}
        - podSelector:
            matchLabels:
              {{- include "rapport.selectorLabels" (list $root $caller) | nindent 14 }}
        {{- end }}
      ports:
        {{- include "rapport.portList" (dict "ports" (values $c.ports | sortAlpha)) | trim | nindent 8 }}
    {{- end }}
    # Prometheus.
    - from:
        {{- toYaml $np.metricsFrom | nindent 8 }}
      ports:
        {{- include "rapport.portList" (dict "ports" (list (index $c.ports $c.metricsPort))) | trim | nindent 8 }}
    {{- if $c.networkPolicy.public }}
    # Public API: clients and ingress controllers.
    - ports:
        {{- include "rapport.portList" (dict "ports" (list $c.ports.http)) | trim | nindent 8 }}
      {{- with $np.publicFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- with $c.networkPolicy.ingressFrom }}
    - from:
        {{- toYaml . | nindent 8 }}
      ports:
        {{- include "rapport.portList" (dict "ports" (values $c.ports | sortAlpha)) | trim | nindent 8 }}
    {{- end }}
  egress:
    # DNS.
    - to:
        {{- toYaml $np.dns.to | nindent 8 }}
      ports:
        {{- include "rapport.portList" (dict "ports" $np.dns.ports "protocol" "UDP") | trim | nindent 8 }}
        {{- include "rapport.portList" (dict "ports" $np.dns.ports "protocol" "TCP") | trim | nindent 8 }}
    {{- range $target := $c.calls }}
    {{- $callee := index $.model $target }}
    # Calls {{ $target }}.
    - to:
        - podSelector:
            matchLabels:
              {{- include "rapport.selectorLabels" (list $root $target) | nindent 14 }}
      ports:
        {{- include "rapport.portList" (dict "ports" (values $callee.ports | sortAlpha)) | trim | nindent 8 }}
    {{- end }}
    {{- range $dependency := list "kafka" "mongo" "redis" "milvus" }}
    {{- if has $dependency $c.uses }}
    {{- $d := index $v $dependency }}
    # {{ $dependency }} (external).
    - ports:
        {{- include "rapport.portList" (dict "ports" $d.ports) | trim | nindent 8 }}
      {{- with $d.egressTo }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- end }}
    {{- if $v.otel.endpoint }}
    # OpenTelemetry collector.
    - ports:
        {{- include "rapport.portList" (dict "ports" $v.otel.ports) | trim | nindent 8 }}
      {{- with $v.otel.egressTo }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- with $c.networkPolicy.extraEgress }}
    # This component's own destinations.
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* ---- monitoring --------------------------------------------------------- */}}

{{- define "rapport.monitor" -}}
{{- $s := .root.Values.monitoring.scrape -}}
apiVersion: monitoring.coreos.com/v1
kind: {{ $s.kind }}
metadata:
  name: {{ include "rapport.componentName" (list .root .name) }}
  labels:
    {{- include "rapport.componentLabels" . | nindent 4 }}
    {{- with $s.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "rapport.selectorLabels" (list .root .name) | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ .root.Release.Namespace }}]
  {{ ternary "endpoints" "podMetricsEndpoints" (eq $s.kind "ServiceMonitor") }}:
    - port: {{ .c.metricsPort }}
      path: {{ .c.metricsPath }}
      interval: {{ $s.interval }}
      scrapeTimeout: {{ $s.scrapeTimeout }}
      # The alerts and dashboards select services by this job name.
      relabelings:
        - action: replace
          targetLabel: job
          replacement: rapport-{{ .name }}
{{- end -}}
