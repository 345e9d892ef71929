{{/*
Names, labels and the component model shared by every template.

A "component context" is the dict that `rapport.components` builds for each
enabled entry of `.Values.components`:
  root  the chart's root context ($)
  name  the component's key (ingest, profile, ...)
  c     `.Values.default` deep-merged with the component's own values
*/}}

{{- define "rapport.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rapport.fullname" -}}
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

{{/* Resource name of a component: <fullname>-<component>. Args: (list $root $name). */}}
{{- define "rapport.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "rapport.fullname" $root | trunc 50 | trimSuffix "-") (index . 1) -}}
{{- end -}}

{{- define "rapport.chartLabel" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of release-wide objects. */}}
{{- define "rapport.labels" -}}
helm.sh/chart: {{ include "rapport.chartLabel" . }}
app.kubernetes.io/name: {{ include "rapport.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rapport
{{- end -}}

{{/* Selector labels of every pod of the release. */}}
{{- define "rapport.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "rapport.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component. Args: (list $root $name). */}}
{{- define "rapport.selectorLabels" -}}
{{ include "rapport.releaseSelectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Labels of one component's objects. Args: component context. */}}
{{- define "rapport.componentLabels" -}}
{{ include "rapport.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Deep merge: copies `src` into `dst` in place. Maps merge key by key; anything
else (lists, scalars, false, 0, "") replaces; null removes the key. */}}
{{- define "rapport.mergeInto" -}}
{{- $dst := .dst -}}
{{- range $key, $value := .src -}}
{{- $current := index $dst $key -}}
{{- if kindIs "invalid" $value -}}
{{- $_ := unset $dst $key -}}
{{- else if and (kindIs "map" $value) (kindIs "map" $current) -}}
{{- include "rapport.mergeInto" (dict "dst" $current "src" $value) -}}
{{- else -}}
{{- $_ := set $dst $key (deepCopy $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Fills `.out` (a dict) with name -> merged values of every enabled component:
`.Values.default` deep-merged with the component's own keys. A component whose
`memory` keeps messages in a vector store (enabled and vectorStore) uses milvus,
with its env and egress. Args: (dict "root" $ "out" dict). */}}
{{- define "rapport.model" -}}
{{- $out := .out -}}
{{- range $name, $own := .root.Values.components -}}
{{- if kindIs "map" $own -}}
{{- $merged := deepCopy $.root.Values.default -}}
{{- include "rapport.mergeInto" (dict "dst" $merged "src" $own) -}}
{{- $memory := $merged.memory -}}
{{- if and (kindIs "map" $memory) $memory.enabled $memory.vectorStore (not (has "milvus" $merged.uses)) -}}
{{- $_ := set $merged "uses" (append ($merged.uses | default list) "milvus") -}}
{{- end -}}
{{- if $merged.enabled -}}
{{- $_ := set $out $name $merged -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* An image reference: [registry/]repository[:tag][@digest]. Args: (dict "root" $ "image" <image values>). */}}
{{- define "rapport.image" -}}
{{- $root := .root -}}
{{- $image := .image -}}
{{- $registry := $image.registry | default $root.Values.image.registry -}}
{{- $tag := $image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- $ref := $image.repository -}}
{{- if $registry -}}
{{- $ref = printf "%s/%s" (trimSuffix "/" $registry) $ref -}}
{{- end -}}
{{- if $tag -}}
{{- $ref = printf "%s:%s" $ref (toString $tag) -}}
{{- end -}}
{{- if $image.digest -}}
{{- $ref = printf "%s@%s" $ref $image.digest -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* Kubernetes-safe volume name for a mount path: /dev/shm -> dev-shm. */}}
{{- define "rapport.volumeName" -}}
{{- $name := . | trimPrefix "/" | regexReplaceAll "[^a-zA-Z0-9]+" "-" | lower | trimSuffix "-" -}}
{{- printf "scratch-%s" (default "root" $name) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of the chart-managed Secret. */}}
{{- define "rapport.secretName" -}}
{{- printf "%s-connections" (include "rapport.fullname" .) -}}
{{- end -}}

{{/* Name of the experiments ConfigMap (templates/experiments.yaml). */}}
{{- define "rapport.experimentsName" -}}
{{- printf "%s-experiments" (include "rapport.fullname" .) -}}
{{- end -}}

{{/* Whether a component gets the experiments file: it `uses` experiments and the list is
not empty. "true" or "". Args: component context. */}}
{{- define "rapport.hasExperiments" -}}
{{- if and (has "experiments" .c.uses) .root.Values.experiments -}}true{{- end -}}
{{- end -}}
