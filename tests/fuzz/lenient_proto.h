// For fuzz targets: a protobuf message from wire-format bytes without protobuf's own
// checks, so that a target reaches the code that must defend against what a parser lets
// through elsewhere. Strings are taken as raw bytes (proto3 parsing refuses invalid UTF-8,
// but a JSON mapping, another client library or a future field type may not), fields of
// the wrong wire type are skipped rather than failing the whole message, and unknown
// field numbers are dropped. Header-only, for the fuzz targets alone.
#pragma once

#include <cstdint>
#include <string>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/unknown_field_set.h"

namespace stip::fuzz {

// Fills `message` from `fields` (already parsed from the wire), recursing into message
// fields; `depth` bounds the recursion for self-referential schemas.
inline void FillLenient(const google::protobuf::UnknownFieldSet& fields,
                        google::protobuf::Message* message, int depth = 0) {
  using google::protobuf::FieldDescriptor;
  using google::protobuf::UnknownField;
  const google::protobuf::Descriptor* descriptor = message->GetDescriptor();
  const google::protobuf::Reflection* reflection = message->GetReflection();
  for (int i = 0; i < fields.field_count(); ++i) {
    const UnknownField& field = fields.field(i);
    const FieldDescriptor* fd = descriptor->FindFieldByNumber(field.number());
    if (fd == nullptr) continue;
    const bool repeated = fd->is_repeated();
    switch (field.type()) {
      case UnknownField::TYPE_VARINT: {
        const uint64_t v = field.varint();
        switch (fd->cpp_type()) {
          case FieldDescriptor::CPPTYPE_INT32:
            repeated ? reflection->AddInt32(message, fd, static_cast<int32_t>(v))
                     : reflection->SetInt32(message, fd, static_cast<int32_t>(v));
            break;
          case FieldDescriptor::CPPTYPE_INT64:
            repeated ? reflection->AddInt64(message, fd, static_cast<int64_t>(v))
                     : reflection->SetInt64(message, fd, static_cast<int64_t>(v));
            break;
          case FieldDescriptor::CPPTYPE_UINT32:
            repeated ? reflection->AddUInt32(message, fd, static_cast<uint32_t>(v))
                     : reflection->SetUInt32(message, fd, static_cast<uint32_t>(v));
            break;
          case FieldDescriptor::CPPTYPE_UINT64:
            repeated ? reflection->AddUInt64(message, fd, v)
                     : reflection->SetUInt64(message, fd, v);
            break;
          case FieldDescriptor::CPPTYPE_BOOL:
            repeated ? reflection->AddBool(message, fd, v != 0)
                     : reflection->SetBool(message, fd, v != 0);
            break;
          case FieldDescriptor::CPPTYPE_ENUM:  // open enums: any number, as the wire allows
            repeated ? reflection->AddEnumValue(message, fd, static_cast<int>(v))
                     : reflection->SetEnumValue(message, fd, static_cast<int>(v));
            break;
          default:
            break;
        }
        break;
      }
      case UnknownField::TYPE_LENGTH_DELIMITED: {
        const std::string& bytes = field.length_delimited();
        if (fd->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
          repeated ? reflection->AddString(message, fd, bytes)
                   : reflection->SetString(message, fd, bytes);
        } else if (fd->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && depth < 8) {
          google::protobuf::UnknownFieldSet nested;
          if (!nested.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) break;
          google::protobuf::Message* child = repeated ? reflection->AddMessage(message, fd)
                                                      : reflection->MutableMessage(message, fd);
          FillLenient(nested, child, depth + 1);
        }
        break;
      }
      default:  // fixed32/64 and groups: no field of ours uses them
        break;
    }
  }
}

// The message `bytes` encode, leniently; false when they are not even wire format.
inline bool ParseLenient(const uint8_t* data, size_t size, google::protobuf::Message* message) {
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromArray(data, static_cast<int>(size))) return false;
  FillLenient(fields, message);
  return true;
}

}  // namespace stip::fuzz
