//! Hand-written subsets of the ONNX and TensorFlow protobuf messages: just the fields that
//! carry a model's signature. prost skips every other field while decoding, so large
//! parts of a model (graph nodes, weights) cost a length skip, not a copy. No `protoc` is
//! needed to build this.
//!
//! Field numbers follow `onnx/onnx.proto` and TensorFlow's `saved_model.proto`,
//! `meta_graph.proto` and `tensor_shape.proto`.

use std::collections::BTreeMap;

// ----- ONNX -----

/// `onnx.ModelProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ModelProto {
    #[prost(int64, tag = "1")]
    pub(crate) ir_version: i64,
    #[prost(string, tag = "2")]
    pub(crate) producer_name: String,
    #[prost(string, tag = "3")]
    pub(crate) producer_version: String,
    #[prost(string, tag = "4")]
    pub(crate) domain: String,
    #[prost(int64, tag = "5")]
    pub(crate) model_version: i64,
    #[prost(string, tag = "6")]
    pub(crate) doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub(crate) graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub(crate) opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    pub(crate) metadata_props: Vec<StringStringEntryProto>,
}

/// `onnx.GraphProto`: nodes (field 1) and the rest are skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GraphProto {
    #[prost(string, tag = "2")]
    pub(crate) name: String,
    #[prost(message, repeated, tag = "5")]
    pub(crate) initializer: Vec<NamedTensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub(crate) input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub(crate) output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "15")]
    pub(crate) sparse_initializer: Vec<SparseTensorProto>,
}

/// `onnx.TensorProto`, name and external data location: the weights are skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NamedTensorProto {
    #[prost(string, tag = "8")]
    pub(crate) name: String,
    #[prost(message, repeated, tag = "13")]
    pub(crate) external_data: Vec<StringStringEntryProto>,
}

/// `onnx.SparseTensorProto`: its name is the name of its `values` tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SparseTensorProto {
    #[prost(message, optional, tag = "1")]
    pub(crate) values: Option<NamedTensorProto>,
}

/// `onnx.ValueInfoProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) r#type: Option<TypeProto>,
}

/// `onnx.TypeProto`. Only tensors have a place in a serving signature; the other kinds
/// are kept as markers so that the error can say what was found.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub(crate) tensor_type: Option<TypeProtoTensor>,
    #[prost(message, optional, tag = "4")]
    pub(crate) sequence_type: Option<Skipped>,
    #[prost(message, optional, tag = "5")]
    pub(crate) map_type: Option<Skipped>,
    #[prost(message, optional, tag = "8")]
    pub(crate) sparse_tensor_type: Option<Skipped>,
    #[prost(message, optional, tag = "9")]
    pub(crate) optional_type: Option<Skipped>,
}

/// `onnx.TypeProto.Tensor`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TypeProtoTensor {
    #[prost(int32, tag = "1")]
    pub(crate) elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub(crate) shape: Option<OnnxShape>,
}

/// `onnx.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct OnnxShape {
    #[prost(message, repeated, tag = "1")]
    pub(crate) dim: Vec<OnnxDim>,
}

/// `onnx.TensorShapeProto.Dimension`: a value, a symbolic parameter, or neither.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct OnnxDim {
    #[prost(int64, optional, tag = "1")]
    pub(crate) dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub(crate) dim_param: Option<String>,
}

/// `onnx.OperatorSetIdProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub(crate) domain: String,
    #[prost(int64, tag = "2")]
    pub(crate) version: i64,
}

/// `onnx.StringStringEntryProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    #[prost(string, tag = "2")]
    pub(crate) value: String,
}

/// Any message whose content does not matter, only its presence.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Skipped {}

// ----- TensorFlow SavedModel -----

/// `tensorflow.SavedModel`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SavedModel {
    #[prost(int64, tag = "1")]
    pub(crate) saved_model_schema_version: i64,
    #[prost(message, repeated, tag = "2")]
    pub(crate) meta_graphs: Vec<MetaGraphDef>,
}

/// `tensorflow.MetaGraphDef`: the graph (field 2) is skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MetaGraphDef {
    #[prost(message, optional, tag = "1")]
    pub(crate) meta_info_def: Option<MetaInfoDef>,
    #[prost(btree_map = "string, message", tag = "5")]
    pub(crate) signature_def: BTreeMap<String, SignatureDef>,
}

/// `tensorflow.MetaGraphDef.MetaInfoDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MetaInfoDef {
    #[prost(string, repeated, tag = "4")]
    pub(crate) tags: Vec<String>,
    #[prost(string, tag = "5")]
    pub(crate) tensorflow_version: String,
}

/// `tensorflow.SignatureDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SignatureDef {
    #[prost(btree_map = "string, message", tag = "1")]
    pub(crate) inputs: BTreeMap<String, TensorInfo>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub(crate) outputs: BTreeMap<String, TensorInfo>,
    #[prost(string, tag = "3")]
    pub(crate) method_name: String,
}

/// `tensorflow.TensorInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorInfo {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(int32, tag = "2")]
    pub(crate) dtype: i32,
    #[prost(message, optional, tag = "3")]
    pub(crate) tensor_shape: Option<TfShape>,
    #[prost(message, optional, tag = "4")]
    pub(crate) coo_sparse: Option<Skipped>,
    #[prost(message, optional, tag = "5")]
    pub(crate) composite_tensor: Option<Skipped>,
}

/// `tensorflow.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TfShape {
    #[prost(message, repeated, tag = "2")]
    pub(crate) dim: Vec<TfDim>,
    #[prost(bool, tag = "3")]
    pub(crate) unknown_rank: bool,
}

/// `tensorflow.TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TfDim {
    #[prost(int64, tag = "1")]
    pub(crate) size: i64,
}
